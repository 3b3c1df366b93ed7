"""Intake against the bare stack: POST /v1/reports (JSON; one 300 KB photo) beside bench/bare_app.py.

    .venv/bin/python bench/intake_vs_bare.py [--seconds 15] [--connections 64] [--workers 1 2]
        [--bodies json photo] [--no-plain] [--intake-tree PATH]

Same uvicorn settings (uvloop, httptools, WARNING logs, no access log), same database, pool and media
folder. The servers being compared are up at once and wrk takes turns between them: `--connections`
connections, `--seconds` per figure in ROUNDS runs (each with new connections, each turn in another order),
after a short warm-up. The machine is shared and its speed drifts by a third within minutes: taking turns,
every figure sees the same drift. The worker is not running: this measures the API's side (validate,
store, commit, enqueue).

The photo's yardstick is the bare streamed upload (python-multipart's streaming parser writing the file
to disk, then one INSERT); the bare app's older UploadFile endpoint (a spooled copy, then a copy in a
thread) is measured too, as a second comparison row. `--intake-tree` runs intake from another checkout
(with this venv) against this bare app: before and after a change in one run.

The main intake row is sent as a real app sends it: a fresh `Idempotency-Key` on every request and the
rate limiter on (its limits set out of reach, so every check is paid and none refuses). A second row,
without the key and with the limiter off, stays for comparison. The bare app gets the same requests.
Goal: realistic intake ≥ 0.8 × the bare requests/s, p99 ≤ 100 ms.
"""

import argparse
import contextlib
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stack  # noqa: E402

PHOTO_BYTES = 300 * 1024
WARM_UP_SECONDS = 3
# Each figure sums this many wrk runs, each opening its own connections, taken in turns with the other
# server's. uvicorn's processes share one listening socket, and a burst of new connections mostly goes to
# whichever process wakes first: in one run, 64 connections split 32/32 or 64/0 by luck, and the 2-process
# figures with them (from 590 to 1,110 req/s for the same bare app in one hour). Several runs average
# over that luck, and turns over the machine's drift, for both stacks.
ROUNDS = 5
GOAL_RATIO = 0.8
GOAL_P99_MS = 100
# Far above what wrk can send from one address with one key: every check is made, none refuses.
OUT_OF_REACH = "10000000/minute"
REALISTIC_ENV = {
    "RATE_LIMITS_ENABLED": "true",
    "RATE_LIMIT_INTAKE_PER_KEY": OUT_OF_REACH,
    "RATE_LIMIT_INTAKE_PER_ADDRESS": OUT_OF_REACH,
    "RATE_LIMIT_INTAKE_PER_REPORTER": OUT_OF_REACH,
}


@dataclass
class Figure:
    workers: int
    body: str  # "json", "photo" (against the bare streamed upload) or "photo_spooled" (the bare UploadFile)
    intake: stack.WrkResult
    bare: stack.WrkResult
    realistic: bool = True  # a fresh Idempotency-Key on every request, the limiter on

    @property
    def ratio(self) -> float:
        return self.intake.rps / self.bare.rps if self.bare.rps else 0.0


def load_env(path: str, api_key: str, photo: Path, *, fresh_keys: bool) -> dict:
    """What the Lua scripts read; `fresh_keys`: a new Idempotency-Key on every request (unique to this wrk run)."""
    return {"BENCH_PATH": path, "BENCH_API_KEY": api_key, "BENCH_PHOTO": str(photo), "BENCH_LUA_DIR": str(stack.LUA),
            "BENCH_IDEMPOTENCY_RUN": uuid.uuid4().hex[:12] if fresh_keys else ""}


BARE_PATHS = {"json": "/bare/reports", "photo": "/bare/upload", "photo_spooled": "/bare/upload-spooled"}
SCRIPTS = {"json": "json.lua", "photo": "photo.lua", "photo_spooled": "photo.lua"}


@dataclass
class _Contender:
    label: str  # "intake", "plain" or "bare"
    body: str
    running: stack.Server
    runs: list[stack.WrkResult] = field(default_factory=list)
    cpu_seconds: float = 0.0

    @property
    def path(self) -> str:
        return BARE_PATHS[self.body] if self.label == "bare" else "/v1/reports"

    def load(self, api_key: str, photo: Path, seconds: float, connections: int) -> stack.WrkResult:
        return stack.wrk(self.running.url, SCRIPTS[self.body], connections=connections, seconds=seconds,
                         env=load_env(self.path, api_key, photo, fresh_keys=self.label != "plain"))

    def result(self) -> stack.WrkResult:
        merged = stack.merge(self.runs)
        merged.server_cpu_ms = 1000 * self.cpu_seconds / max(1, merged.requests)
        return merged


SERVERS = {"intake": ("intake", REALISTIC_ENV), "bare": ("bare", {}), "plain": ("intake", {})}


def measure(workers: int, api_key: str, photo: Path, seconds: float, connections: int, labels: tuple[str, ...],
            bodies: tuple[str, ...] = ("json", "photo"), tree: Path | None = None) -> dict[str, dict]:
    """{label: {body: WrkResult}} for realistic intake ("intake"), the bare app ("bare") or intake without
    key or limiter ("plain"): their servers up at once, wrk taking turns between them (ROUNDS turns each),
    so that what else the machine does in those minutes weighs on every figure alike."""
    results: dict[str, dict] = {label: {} for label in labels}
    with contextlib.ExitStack() as servers:
        running = {}
        for label in labels:
            kind, env = SERVERS[label]
            running[label] = servers.enter_context(
                stack.server(kind, workers, tree=tree if kind == "intake" else None, **env))
        for body in bodies:
            stack.reset_reports()
            contenders = [_Contender(label, body, server) for label, server in running.items()]
            if body == "photo" and "bare" in running:
                contenders.append(_Contender("bare", "photo_spooled", running["bare"]))
            for contender in contenders:
                contender.load(api_key, photo, WARM_UP_SECONDS, connections)
            stack.clear_media()
            for turn in range(ROUNDS):
                # Each turn in another order: no one always follows the same neighbour.
                for contender in contenders[turn % len(contenders):] + contenders[: turn % len(contenders)]:
                    cpu_before = contender.running.cpu_seconds()
                    contender.runs.append(contender.load(api_key, photo, max(1, round(seconds / ROUNDS)), connections))
                    # The server's CPU until the next run starts: what it still does for these requests.
                    time.sleep(0.5)
                    contender.cpu_seconds += contender.running.cpu_seconds() - cpu_before
                    if body == "photo":  # every run starts with an empty media folder
                        stack.clear_media()
            for contender in contenders:
                result = results[contender.label][contender.body] = contender.result()
                stack.log(f"{contender.label:6} {workers}w {contender.body:5}: {result.rps:7.1f} req/s  "
                          f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  "
                          f"server CPU {result.server_cpu_ms:.2f} ms/request  errors {result.errors}  "
                          f"runs {[round(run.rps) for run in contender.runs]}")
    return results


def _figures(count: int, intake: dict, bare: dict, realistic: bool) -> list[Figure]:
    figures = [Figure(count, body, intake[body], bare[body], realistic) for body in intake]
    if "photo" in intake:
        figures.append(Figure(count, "photo_spooled", intake["photo"], bare["photo_spooled"], realistic))
    return figures


def run(seconds: float = 15, connections: int = 64, workers: tuple[int, ...] = (1, 2),
        plain: bool = True, bodies: tuple[str, ...] = ("json", "photo"), tree: Path | None = None) -> list[Figure]:
    """Per process count: realistic intake, the bare app (same requests), and (`plain`) intake without key or limiter."""
    stack.ensure_wrk()
    photo = stack.jpeg_of_size(stack.WORK / "photo-300k.jpg", PHOTO_BYTES)
    api_key = stack.create_api_key()
    figures = []
    for count in workers:
        results = measure(count, api_key, photo, seconds, connections, ("intake", "bare"), bodies, tree)
        figures += _figures(count, results["intake"], results["bare"], realistic=True)
        if plain:  # after, on its own: three servers' pools at once are more than PostgreSQL's 100 connections
            unkeyed = measure(count, api_key, photo, seconds, connections, ("plain",), bodies, tree)
            figures += _figures(count, unkeyed["plain"], results["bare"], realistic=False)
    stack.reset_reports()
    return figures


def goal_met(figure: Figure) -> bool:
    # Issue 16: the ratio for every main row; the p99 bound for JSON (a 300 KB upload over loopback takes
    # longer than that for the bare app too: its p99 is in the same table).
    return figure.ratio >= GOAL_RATIO and (figure.body != "json" or figure.intake.p99_ms <= GOAL_P99_MS)


def render(figures: list[Figure], seconds: float, connections: int, photo_bytes: int) -> str:
    lines = [
        f"`POST /v1/reports` against `bench/bare_app.py` (FastAPI + asyncpg, one INSERT; the upload endpoint "
        f"also parses the multipart body as it arrives and streams the photo to disk; the *spooled* one goes "
        f"through FastAPI's UploadFile, a spooled copy then a copy in a thread), {connections} connections after a "
        f"{WARM_UP_SECONDS} s warm-up, wrk on the same machine, worker stopped. The servers compared are up "
        f"at once and wrk takes turns between them: each figure is {ROUNDS} runs of {max(1, round(seconds / ROUNDS))} s "
        f"(each with new connections; each turn in another order) taken together: requests over the summed time, "
        f"percentiles over all their requests. How uvicorn's processes share a burst of new connections is luck, "
        f"and the machine's speed drifts within minutes: turns give every figure the same luck and drift.",
        "",
        "Main rows (**key + limiter**): every intake request carries a fresh `Idempotency-Key` and the rate "
        "limiter is on with its limits out of reach; rows marked *plain* send no key and switch the limiter off "
        "(for comparison). The bare app gets the same requests (it ignores the key).",
        "",
        "| uvicorn processes | body | intake | intake req/s | bare req/s | ratio | intake p50 / p99 ms | bare p50 / p99 ms | server CPU ms per request, intake / bare | intake errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for figure in figures:
        body = {"json": "JSON", "photo": f"multipart, 1 photo ({photo_bytes // 1024} KB)",
                "photo_spooled": f"multipart, 1 photo ({photo_bytes // 1024} KB), against the bare *spooled* upload"}[figure.body]
        mode = "**key + limiter**" if figure.realistic else "*plain*"
        lines.append(
            f"| {figure.workers} | {body} | {mode} | {figure.intake.rps:,.0f} | {figure.bare.rps:,.0f} | **{figure.ratio:.2f}** | "
            f"{figure.intake.p50_ms:.1f} / {figure.intake.p99_ms:.1f} | {figure.bare.p50_ms:.1f} / {figure.bare.p99_ms:.1f} | "
            f"{figure.intake.server_cpu_ms:.2f} / {figure.bare.server_cpu_ms:.2f} | {figure.intake.failed or 0} |"
        )
    main = [f for f in figures if f.realistic and f.body != "photo_spooled"]
    met = [f for f in main if goal_met(f)]
    lines += [
        "",
        "Server CPU per request is the server processes' CPU time over the requests answered: unlike",
        "requests/s it hardly moves when other work shares the machine.",
        "",
        f"Goal (key + limiter rows against the streamed upload: ratio ≥ {GOAL_RATIO}; JSON rows also p99 ≤ {GOAL_P99_MS} ms): "
        f"met in {len(met)} of {len(main)} rows.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--fresh", action="store_true", help="recreate the bench database first")
    parser.add_argument("--no-plain", action="store_true", help="skip the comparison rows without key and limiter")
    parser.add_argument("--bodies", nargs="+", choices=["json", "photo"], default=["json", "photo"])
    parser.add_argument("--intake-tree", type=Path, help="run intake from this checkout (before/after in one run)")
    args = parser.parse_args()
    if args.fresh:
        stack.fresh_database()
    else:
        stack.ensure_database()
    figures = run(args.seconds, args.connections, tuple(args.workers), plain=not args.no_plain,
                  bodies=tuple(args.bodies), tree=args.intake_tree)
    print(render(figures, args.seconds, args.connections, PHOTO_BYTES))


if __name__ == "__main__":
    main()
