"""Where an intake request's time goes: py-spy samples `intake serve` (one process) under wrk load.

    .venv/bin/python bench/profile_intake.py [--body json|photo] [--seconds 12]

Prints the share of samples by package (the innermost frame's) and the service's own functions by
inclusive share; `make bench` adds the JSON profile to bench/RESULTS.md when the intake goal is missed.
py-spy needs ptrace rights (root, or CAP_SYS_PTRACE); without them the profile is skipped.
"""

import argparse
import collections
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stack  # noqa: E402

FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _idle(innermost: re.Match) -> bool:
    """A thread-pool thread waiting for work (py-spy counts it as busy): under the photo load, most samples."""
    return innermost["file"] == "threading.py" and innermost["function"].split(".")[-1] == "wait"


def summarise(raw: Path, top: int = 12, prefixes: tuple[str, ...] = ("service/",)
              ) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """(samples, [(package, share)], [(our function, inclusive share)]) from py-spy's raw (collapsed) output;
    our functions are those in files under `prefixes`."""
    packages: collections.Counter = collections.Counter()
    ours: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        frames_text, _, count_text = line.rpartition(" ")
        if not frames_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [FRAME.match(frame) for frame in frames_text.split(";")]
        frames = [frame for frame in frames if frame]
        if frames and _idle(frames[-1]):
            continue
        total += count
        if not frames:
            continue
        innermost = frames[-1]["file"]
        packages[innermost.split("/")[0].removesuffix(".py")] += count
        for name in {f"{frame['function']} ({frame['file']})" for frame in frames
                     if frame["file"].startswith(prefixes) and not frame["file"].startswith("service/cli.py")
                     and frame["function"].split(".")[-1] != "__call__"}:
            ours[name] += count
    share = lambda counter: [(name, count / total) for name, count in counter.most_common(top)]  # noqa: E731
    return total, share(packages), share(ours)


def run(body: str = "json", seconds: int = 12) -> str | None:
    spy = stack.BIN / "py-spy"
    if not spy.exists():
        return None
    photo = stack.jpeg_of_size(stack.WORK / "photo-300k.jpg", 300 * 1024)
    api_key = stack.create_api_key("bench profile")
    raw = stack.WORK / f"profile-{body}.txt"
    from bench.intake_vs_bare import REALISTIC_ENV, load_env

    stack.reset_reports()
    with stack.server("intake", 1, **REALISTIC_ENV) as running:  # as apps send: a fresh key, the limiter on
        stack.wrk(running.url, f"{body}.lua", connections=64, seconds=3,
                  env=load_env("/v1/reports", api_key, photo, fresh_keys=True))
        env = load_env("/v1/reports", api_key, photo, fresh_keys=True)
        recorder = subprocess.Popen([str(spy), "record", "-d", str(seconds), "-r", "250", "-f", "raw", "-o", str(raw),
                                     "-p", str(running.process.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        result = stack.wrk(running.url, f"{body}.lua", connections=64, seconds=seconds + 2, env=env)
        _, error = recorder.communicate(timeout=60)
    stack.reset_reports()
    if recorder.returncode != 0 or not raw.exists():
        stack.log(f"py-spy could not record: {error.decode()[-300:]}")
        return None
    total, packages, ours = summarise(raw)
    lines = [
        f"py-spy, {total:,} samples of one `intake serve` process under the {body.upper()} load "
        f"({result.rps:,.0f} req/s while sampled; a fresh `Idempotency-Key` on every request, the limiter on). Share of samples by the package running (innermost frame):",
        "",
        "| package | share |", "|---|---|",
        *(f"| {name} | {value:.0%} |" for name, value in packages),
        "",
        "The service's own functions, inclusive (SQLAlchemy's greenlet frames are counted apart, so these "
        "understate the database work they start):",
        "",
        "| function | share |", "|---|---|",
        *(f"| `{name}` | {value:.0%} |" for name, value in ours),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body", choices=["json", "photo"], default="json")
    parser.add_argument("--seconds", type=int, default=12)
    args = parser.parse_args()
    stack.ensure_database()
    print(run(args.body, args.seconds) or "py-spy is not available")


if __name__ == "__main__":
    main()
