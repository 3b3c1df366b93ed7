"""`make bench`: every load benchmark in one run on a fresh database, written to bench/RESULTS.md.

    .venv/bin/python bench/run_all.py [--quick] [--only intake worker memory storm webhooks]

1. intake against the bare stack (bench/intake_vs_bare.py), with 1 and 2 uvicorn processes
2. worker throughput beside a bare arq job (bench/worker_throughput.py), and a profile of one worker
   (bench/profile_worker.py)
3. API memory under 20 × 10 MB of uploads (bench/memory.py)
4. the storm: 20,000 reports in 60 s, drained by 2 workers (bench/storm.py)
5. webhooks: a burst of report lifecycles against a slow receiver, repeats and order (bench/webhook_delivery.py)
6. the IOC summary at 1,000,000 reports (bench/ioc_summary.py; seeds its own database once, ~4 minutes)

Each writes its own section of RESULTS.md between `<!-- bench_<name>:begin -->` (`ioc_summary:begin`) and
`:end` markers; other sections are left as they are. `--quick` is a smoke run with small
numbers that writes nothing.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import (  # noqa: E402
    intake_vs_bare,
    memory,
    profile_intake,
    profile_worker,
    stack,
    storm,
    webhook_delivery,
    worker_throughput,
)

BENCHMARKS = ["intake", "worker", "memory", "storm", "webhooks", "ioc"]
RERUN = "Re-run: `make bench` (or `.venv/bin/python bench/{module}.py`)."


def section(title: str, header: str, body: str, module: str) -> str:
    return f"## {title}\n\n{header}\n\n{body}\n\n{RERUN.format(module=module)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small numbers, nothing written")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=BENCHMARKS)
    parser.add_argument("--storm-reports", type=int, default=int(os.environ.get("STORM_REPORTS", 20_000)))
    args = parser.parse_args()
    stack.ensure_wrk()
    load = stack.wait_for_quiet_machine(tries=1 if args.quick else 6)
    stack.log(f"load average {load[0]:.2f}; fresh database {stack.DATABASE}")
    stack.fresh_database()
    started = time.monotonic()
    write = (lambda name, text: print(text)) if args.quick else stack.write_section

    if "intake" in args.only:
        seconds = 3 if args.quick else 15
        before = stack.wait_for_quiet_machine(tries=1 if args.quick else 3)
        figures = intake_vs_bare.run(seconds=seconds, connections=64, workers=(1, 2))
        body = intake_vs_bare.render(figures, seconds, 64, intake_vs_bare.PHOTO_BYTES)
        if not args.quick:  # where the remaining time goes, met or not
            for kind in ("json", "photo"):
                profile = profile_intake.run(kind)
                if profile:
                    body += f"\n\n### Where the time goes, {kind.upper()} (`bench/profile_intake.py --body {kind}`)\n\n" + profile
        write("bench_intake", section(
            "Intake against the bare stack (`bench/intake_vs_bare.py`)", stack.header(before), body, "intake_vs_bare"))
    if "worker" in args.only:
        before = stack.wait_for_quiet_machine(tries=1 if args.quick else 3)
        reports = 200 if args.quick else 2000
        body = worker_throughput.render(*worker_throughput.run(reports))  # before the header: it reads the load after
        if not args.quick:  # where the remaining time goes, met or not
            profile = profile_worker.run(3000)
            if profile:
                body += "\n\n### Where the time goes (`bench/profile_worker.py`)\n\n" + profile
        write("bench_worker", section(
            "Worker throughput (`bench/worker_throughput.py`)", stack.header(before), body, "worker_throughput"))
    if "memory" in args.only:
        before = stack.wait_for_quiet_machine(tries=1 if args.quick else 3)
        body = memory.render(memory.run(clients=20, rounds=1 if args.quick else 3))
        write("bench_memory", section(
            "API memory under large uploads (`bench/memory.py`)", stack.header(before), body, "memory"))
    if "storm" in args.only:
        before = stack.wait_for_quiet_machine(tries=1 if args.quick else 3)
        reports, seconds = (500, 5) if args.quick else (args.storm_reports, 60)
        body = storm.render(storm.run(reports, seconds, api_workers=2, workers=2))
        write("bench_storm", section("The storm (`bench/storm.py`)", stack.header(before), body, "storm"))
    if "webhooks" in args.only:
        before = stack.wait_for_quiet_machine(tries=1 if args.quick else 3)
        body = webhook_delivery.render(webhook_delivery.run(reports=20 if args.quick else 100))
        write("bench_webhooks", section(
            "Webhook delivery under a burst of lifecycles (`bench/webhook_delivery.py`)", stack.header(before), body,
            "webhook_delivery"))
    if "ioc" in args.only:
        stack.wait_for_quiet_machine(tries=1 if args.quick else 3)
        tickets = ["--tickets", "20000", "--requests", "20", "--cached-requests", "50", "--no-write"] if args.quick else []
        subprocess.run([sys.executable, str(stack.ROOT / "bench" / "ioc_summary.py"), *tickets], check=True)
    stack.log(f"benchmarks done in {time.monotonic() - started:.0f} s"
              + ("" if args.quick else f"; see {stack.RESULTS.relative_to(stack.ROOT)}"))


if __name__ == "__main__":
    main()
