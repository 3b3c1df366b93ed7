"""Memory under big uploads: peak RSS of the API process while 20 clients each upload 10 MB of photos
at once (2 × 5 MB JPEGs per report), against its idle RSS. Photos must stream, not sit in memory.

    .venv/bin/python bench/memory.py [--clients 20] [--rounds 3]

VmRSS of the `intake serve` process (one uvicorn process) is read from /proc every 20 ms during the
run; the clients are a separate process (bench/upload_clients.py). Goal: peak − idle ≤ 100 MB.
"""

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stack  # noqa: E402

PHOTO_BYTES = 5 * 1024 * 1024
MB = 1024 * 1024


@dataclass
class Memory:
    clients: int
    rounds: int
    idle: int
    warm: int
    peak: int
    statuses: dict
    seconds: float

    @property
    def growth(self) -> int:
        return self.peak - self.idle


def run(clients: int = 20, rounds: int = 3) -> Memory:
    stack.reset_reports()
    photos = [stack.jpeg_of_size(stack.WORK / f"photo-5m-{index}.jpg", PHOTO_BYTES, seed=index) for index in (1, 2)]
    api_key = stack.create_api_key("bench memory")
    with stack.server("intake", 1) as running:
        sampler = stack.RssSampler(running.pids)
        # Idle: after start-up and one small request (imports and pools warmed), nothing in flight.
        import httpx

        httpx.post(running.url + "/v1/reports", json=stack.storm_report(0, __import__("random").Random(1)),
                   headers={"X-API-Key": api_key}, timeout=30)
        time.sleep(1)
        idle = sampler.total()
        with sampler:
            out = subprocess.run(
                [str(stack.BIN / "python"), str(stack.BENCH / "upload_clients.py"), running.url, api_key,
                 *map(str, photos), "--clients", str(clients), "--rounds", str(rounds)],
                capture_output=True, text=True, timeout=600, check=True,
            )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        time.sleep(1)
        warm = sampler.total()
    memory = Memory(clients, rounds, idle, warm, sampler.peak, dict(result["statuses"]), result["seconds"])
    stack.log(f"memory: idle {idle / MB:.1f} MB, peak {memory.peak / MB:.1f} MB (+{memory.growth / MB:.1f}), "
              f"after {warm / MB:.1f} MB; {memory.statuses} in {memory.seconds:.1f} s")
    stack.reset_reports()
    return memory


def render(memory: Memory) -> str:
    uploaded = memory.clients * memory.rounds * 2 * PHOTO_BYTES / MB
    ok = "met" if memory.growth <= 100 * MB else "**missed**"
    return "\n".join([
        f"{memory.clients} clients at once, each POSTing a report with 2 × 5 MB JPEGs, {memory.rounds} rounds "
        f"({uploaded:,.0f} MB in all, answers {memory.statuses}, {memory.seconds:.1f} s); one `intake serve` process, "
        "VmRSS sampled every 20 ms.",
        "",
        "| idle RSS | peak RSS | peak − idle | RSS after |",
        "|---|---|---|---|",
        f"| {memory.idle / MB:.1f} MB | {memory.peak / MB:.1f} MB | **{memory.growth / MB:.1f} MB** | {memory.warm / MB:.1f} MB |",
        "",
        f"Goal (peak − idle ≤ 100 MB): {ok}.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    stack.ensure_database()
    print(render(run(args.clients, args.rounds)))


if __name__ == "__main__":
    main()
