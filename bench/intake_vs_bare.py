"""Intake against the bare stack: POST /v1/reports (JSON; one 300 KB photo) beside bench/bare_app.py.

    .venv/bin/python bench/intake_vs_bare.py [--seconds 15] [--connections 64] [--workers 1 2]
        [--bodies json photo] [--no-plain] [--intake-tree PATH]

Same uvicorn settings (uvloop, httptools, WARNING logs, no access log), same database, pool and media
folder; load from wrk at `--connections` connections for `--seconds` per figure (in ROUNDS runs, each with
new connections), after a short warm-up.
The worker is not running: this measures the API's side (validate, store, commit, enqueue).

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
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stack  # noqa: E402

PHOTO_BYTES = 300 * 1024
WARM_UP_SECONDS = 3
# Each figure sums this many wrk runs, each opening its own connections. uvicorn's processes share one
# listening socket, and a burst of new connections mostly goes to whichever process wakes first: in one
# run, 64 connections split 32/32 or 64/0 by luck, and the 2-process figures with them (from 590 to
# 1,110 req/s for the same bare app in one hour). Several runs average over that luck, for both stacks.
ROUNDS = 3
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


def measure(kind: str, workers: int, api_key: str, photo: Path, seconds: float, connections: int,
            realistic: bool = True, bodies: tuple[str, ...] = ("json", "photo"), tree: Path | None = None) -> dict:
    stack.reset_reports()
    if kind == "bare" and "photo" in bodies:
        bodies = (*bodies, "photo_spooled")
    results = {}
    server_env = REALISTIC_ENV if kind == "intake" and realistic else {}
    with stack.server(kind, workers, tree=tree if kind == "intake" else None, **server_env) as running:
        for body in bodies:
            path, script = BARE_PATHS[body] if kind == "bare" else "/v1/reports", SCRIPTS[body]
            stack.wrk(running.url, script, connections=connections, seconds=WARM_UP_SECONDS,
                      env=load_env(path, api_key, photo, fresh_keys=realistic))
            cpu_before = running.cpu_seconds()
            result = stack.merge([
                stack.wrk(running.url, script, connections=connections, seconds=max(1, round(seconds / ROUNDS)),
                          env=load_env(path, api_key, photo, fresh_keys=realistic))
                for _ in range(ROUNDS)
            ])
            result.server_cpu_ms = 1000 * (running.cpu_seconds() - cpu_before) / max(1, result.requests)
            label = kind if kind == "bare" else ("intake" if realistic else "plain")
            stack.log(f"{label:6} {workers}w {body:5}: {result.rps:7.1f} req/s  p50 {result.p50_ms:6.1f} ms  "
                      f"p99 {result.p99_ms:6.1f} ms  server CPU {result.server_cpu_ms:.2f} ms/request  errors {result.errors}"
                      f"  statuses {result.statuses}")
            results[body] = result
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
        intake = measure("intake", count, api_key, photo, seconds, connections, True, bodies, tree)
        bare = measure("bare", count, api_key, photo, seconds, connections, True, bodies)
        figures += _figures(count, intake, bare, realistic=True)
        if plain:
            unkeyed = measure("intake", count, api_key, photo, seconds, connections, False, bodies, tree)
            figures += _figures(count, unkeyed, bare, realistic=False)
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
        f"{WARM_UP_SECONDS} s warm-up, wrk on the same machine, worker stopped. Each figure is {ROUNDS} wrk runs of "
        f"{max(1, round(seconds / ROUNDS))} s, each with new connections, taken together (requests over the summed "
        f"time; percentiles over all their requests): how uvicorn's processes share a burst of new connections is "
        f"luck, so one run measures the luck of its split.",
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
