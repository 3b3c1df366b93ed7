"""The storm: 20,000 reports sent in 60 s (≈333/s, open loop) while two workers process them; every
accepted report must be processed, and the time to drain is recorded.

    .venv/bin/python bench/storm.py [--reports 20000] [--seconds 60] [--api-workers 2] [--workers 2]

The load is wrk (bench/lua/storm.lua): each request has a due time on a fixed schedule and goes out
then on one of 64 connections (at once when late, so a slow API makes it late, not lighter), reports
spread over the demo wards. wrk stops once every report is in, or after 5 × `--seconds`.
"""

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stack  # noqa: E402

DRAIN_TIMEOUT_SECONDS = 1800
SEND_LIMIT = 5


@dataclass
class Storm:
    target: int
    target_seconds: float
    api_workers: int
    workers: int
    wrk: stack.WrkResult | None = None
    accepted: int = 0
    processed: int = 0
    send_seconds: float = 0.0  # first to last accepted report (created_at)
    drain_seconds: float | None = None  # last accepted → last processed
    total_seconds: float | None = None  # first accepted → last processed
    peak_queue: int = 0
    statuses: dict = field(default_factory=dict)

    @property
    def drained(self) -> bool:
        return self.accepted > 0 and self.processed == self.accepted


def run(reports: int = 20_000, seconds: float = 60, api_workers: int = 2, workers: int = 2) -> Storm:
    stack.reset_reports()
    stack.vacuum()
    storm = Storm(reports, seconds, api_workers, workers)
    api_key = stack.create_api_key("bench storm")
    # Smaller pools than the default 10 + 10: four processes at 20 would take 80 of the shared cluster's
    # 100 connections, and two cores never keep more than a few busy.
    pools = {"DB_POOL_SIZE": "6", "DB_MAX_OVERFLOW": "4"}
    processes = stack.start_workers(workers, **pools)
    try:
        with stack.server("intake", api_workers, **pools) as running:
            time.sleep(5)  # the workers load the classifier and run their start-up sweeps
            peak = [0]
            stop = threading.Event()

            def watch_queue() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], stack.queue_depth())
                    stop.wait(1)

            watcher = threading.Thread(target=watch_queue, daemon=True)
            watcher.start()
            env = {"BENCH_API_KEY": api_key, "BENCH_COUNT": str(reports), "BENCH_RATE": str(reports / seconds),
                   "BENCH_THREADS": "1", "BENCH_LUA_DIR": str(stack.LUA)}
            # Every report is sent however long the API takes (it is saturated long before 333/s on two cores),
            # up to SEND_LIMIT × the planned time; wrk is stopped as soon as the last one is in.
            storm.wrk = stack.wrk(running.url, "storm.lua", connections=64, seconds=seconds * SEND_LIMIT, env=env,
                                  timeout_s=30, stop_when=lambda: stack.sql("SELECT count(*) FROM reports") >= reports)
            storm.statuses = storm.wrk.statuses
            stack.log(f"storm sent: {storm.wrk.requests} requests, statuses {storm.statuses}, errors {storm.wrk.errors}, "
                      f"p50 {storm.wrk.p50_ms:.0f} ms p99 {storm.wrk.p99_ms:.0f} ms")
        storm.accepted = stack.sql("SELECT count(*) FROM reports")

        def processed() -> int:
            storm.processed = stack.sql("SELECT count(*) FROM reports WHERE processed_at IS NOT NULL")
            return storm.processed

        last_log = [time.monotonic()]

        def drained() -> bool:
            done = processed() >= storm.accepted
            if time.monotonic() - last_log[0] > 30:
                stack.log(f"draining: {storm.processed:,} of {storm.accepted:,} processed, queue {stack.queue_depth():,}")
                last_log[0] = time.monotonic()
            return done

        stack.wait_until(drained, DRAIN_TIMEOUT_SECONDS, 1)
        stop.set()
        storm.peak_queue = peak[0]
    finally:
        for process in processes:
            stack.stop_process(process)
    storm.send_seconds = float(stack.sql("SELECT extract(epoch FROM max(created_at) - min(created_at)) FROM reports") or 0)
    if storm.drained:
        storm.drain_seconds = float(stack.sql("SELECT extract(epoch FROM max(processed_at) - max(created_at)) FROM reports"))
        storm.total_seconds = float(stack.sql("SELECT extract(epoch FROM max(processed_at) - min(created_at)) FROM reports"))
    stack.log(f"storm: {storm.accepted:,} accepted in {storm.send_seconds:.1f} s, {storm.processed:,} processed, "
              f"drain {storm.drain_seconds} s, total {storm.total_seconds} s, peak queue {storm.peak_queue:,}")
    return storm


def render(storm: Storm) -> str:
    result = storm.wrk
    rejected = {code: n for code, n in storm.statuses.items() if code != "201"}
    lines = [
        f"{storm.target:,} reports on a fixed schedule over {storm.target_seconds:.0f} s "
        f"({storm.target / storm.target_seconds:.0f}/s, wrk, 64 connections, open loop) into `intake serve --workers "
        f"{storm.api_workers}`, with {storm.workers} `intake worker` processes running (pools of 6 + 4 connections "
        "each); PostgreSQL, Redis, the API, the workers and wrk share the 2 cores.",
        "",
        "| answered | accepted (201) | other answers | not sent or not answered in time | intake p50 / p99 ms | accepting took | processed | drain after the last accepted | first accepted → all processed | peak queue |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {result.requests:,} | {storm.accepted:,} | {rejected or 'none'} | "
        f"{storm.target - sum(storm.statuses.values()):,} | {result.p50_ms:,.0f} / {result.p99_ms:,.0f} | "
        f"{storm.send_seconds:.1f} s | {storm.processed:,} | "
        + (f"**{storm.drain_seconds:.1f} s** | {storm.total_seconds:.1f} s" if storm.drained else "**not drained**")
        + f" | {storm.peak_queue:,} |",
        "",
        ("Every accepted report was processed." if storm.drained
         else f"**{storm.accepted - storm.processed:,} accepted reports were not processed within {DRAIN_TIMEOUT_SECONDS} s.**"),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    stack.ensure_database()
    print(render(run(args.reports, args.seconds, args.api_workers, args.workers)))


if __name__ == "__main__":
    main()
