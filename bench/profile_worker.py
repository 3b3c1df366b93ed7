"""Where a worker's time goes: py-spy samples one `intake worker` process draining a full queue.

    .venv/bin/python bench/profile_worker.py [--reports 3000]

The reports are filed through the API first (worker stopped), as in bench/worker_throughput.py; sampling
starts once the worker has processed its first report (its start-up, loading the classifier, is left
out) and stops when the queue is drained. Prints the share of samples by package (the innermost frame's)
and the service's and workers' own functions by inclusive share; `make bench` adds it to bench/RESULTS.md.
py-spy needs ptrace rights (root, or CAP_SYS_PTRACE); without them the profile is skipped.
"""

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stack  # noqa: E402
from bench.profile_intake import FRAME, summarise  # noqa: E402

PROCESSED = "SELECT count(*) FROM reports WHERE processed_at IS NOT NULL"
# The pipeline's steps, by the first of these functions on the stack (outermost first).
STEPS = [
    ("claim", "claiming the batch (`pipeline.claim`)"),
    ("process_photos_of", "photos"),
    ("_predict", "the classifier (`_predict`)"),
    ("_prioritise", "priority cues (`_prioritise`)"),
    ("load_finder", "the duplicate search (`load_finder`, `Finder.find`)"),
    ("Finder.find", "the duplicate search (`load_finder`, `Finder.find`)"),
    ("_place", "placing: jurisdiction, routing, SLA and their events (`_place`)"),
    ("Batch.write", "the writes (`Batch.write`)"),
    ("Handoff.commit", "the commit (`Handoff.commit`)"),
    ("process_claimed", "the rest of `process_claimed`"),
    ("process_report", "the rest of the job (`process_report`)"),
    ("Worker.main", "arq's polling and job start (`Worker.main`)"),
    ("Worker.run_job", "arq's bookkeeping around a job (`Worker.run_job`)"),
]


def steps(raw: Path) -> list[tuple[str, float]]:
    """Share of samples by pipeline step; SQLAlchemy's synchronous work runs in greenlets whose stacks
    py-spy shows apart, and waiting in the event loop's `select` is idle time."""
    shares: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        frames_text, _, count_text = line.rpartition(" ")
        if not frames_text or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        names = [match["function"] for frame in frames_text.split(";") if (match := FRAME.match(frame))]
        step = next((label for function, label in STEPS if function in names), None)
        if step is None:
            if (names and names[-1].endswith("select")) or "_worker" in names:
                step = "idle (waiting in `select`, idle threads)"
            elif names and names[0] != "<module>":
                step = "SQLAlchemy's synchronous work in greenlets (all steps)"
            else:
                step = "other (the event loop, Redis replies, hand-offs)"
        shares[step] = shares.get(step, 0) + count
    return sorted(((step, count / total) for step, count in shares.items()), key=lambda pair: -pair[1])


def run(reports: int = 3000) -> str | None:
    spy = stack.BIN / "py-spy"
    if not spy.exists():
        return None
    raw = stack.WORK / "profile-worker.txt"
    raw.unlink(missing_ok=True)
    stack.reset_reports()
    api_key = stack.create_api_key("bench worker profile")
    with stack.server("intake", 1) as running:
        created = stack.submit_reports(running.url, api_key, reports)
    assert created == reports, f"only {created} of {reports} reports were accepted"
    (worker,) = stack.start_workers(1)
    recorder = None
    try:
        if not stack.wait_until(lambda: stack.sql(PROCESSED) > 0, 120, 0.05):
            raise RuntimeError("the worker processed nothing in 2 minutes")
        recorder = subprocess.Popen([str(spy), "record", "-r", "250", "-f", "raw", "-o", str(raw), "-p",
                                     str(worker.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        sampled_from = stack.sql(PROCESSED)
        started = time.monotonic()
        stack.wait_until(lambda: stack.sql(PROCESSED) >= reports, 600, 0.1)
        seconds = time.monotonic() - started
        sampled = stack.sql(PROCESSED) - sampled_from
    finally:
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)  # py-spy writes what it sampled when interrupted
            _, error = recorder.communicate(timeout=60)
        stack.stop_process(worker)
    stack.reset_reports()
    if recorder is None or not raw.exists():
        stack.log(f"py-spy could not record: {error.decode()[-300:] if recorder else ''}")
        return None
    total, packages, ours = summarise(raw, top=16, prefixes=("service/", "workers/"))
    lines = [
        f"py-spy, {total:,} samples of one `intake worker` process draining a queue of {reports:,} reports filed "
        f"through the API ({sampled:,} reports processed while sampled, {sampled / seconds:,.0f}/s under the "
        "profiler). Share of samples by step of the pipeline:",
        "",
        "| step | share |", "|---|---|",
        *(f"| {name} | {value:.0%} |" for name, value in steps(raw)),
        "",
        "By the package running (innermost frame):",
        "",
        "| package | share |", "|---|---|",
        *(f"| {name} | {value:.0%} |" for name, value in packages),
        "",
        "The service's and the workers' own functions, inclusive (SQLAlchemy's greenlet frames are counted "
        "apart, so these understate the database work they start):",
        "",
        "| function | share |", "|---|---|",
        *(f"| `{name}` | {value:.0%} |" for name, value in ours),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=3000)
    args = parser.parse_args()
    stack.ensure_database()
    print(run(args.reports) or "py-spy is not available")


if __name__ == "__main__":
    main()
