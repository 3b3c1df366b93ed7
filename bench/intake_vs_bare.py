"""Intake against the bare stack: POST /v1/reports (JSON; one 300 KB photo) beside bench/bare_app.py.

    .venv/bin/python bench/intake_vs_bare.py [--seconds 15] [--connections 64] [--workers 1 2]

Same uvicorn settings (uvloop, httptools, WARNING logs, no access log), same database, pool and media
folder; load from wrk at `--connections` connections for `--seconds` per figure, after a short warm-up.
The worker is not running: this measures the API's side (validate, store, commit, enqueue).
Goal: intake ≥ 0.6 × the bare requests/s, p99 ≤ 100 ms.
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stack  # noqa: E402

PHOTO_BYTES = 300 * 1024
WARM_UP_SECONDS = 3


@dataclass
class Figure:
    workers: int
    body: str  # "json" or "photo"
    intake: stack.WrkResult
    bare: stack.WrkResult

    @property
    def ratio(self) -> float:
        return self.intake.rps / self.bare.rps if self.bare.rps else 0.0


def measure(kind: str, workers: int, api_key: str, photo: Path, seconds: float, connections: int) -> dict:
    stack.reset_reports()
    paths = {"intake": ("/v1/reports", "/v1/reports"), "bare": ("/bare/reports", "/bare/upload")}[kind]
    results = {}
    with stack.server(kind, workers) as running:
        for body, path, script in (("json", paths[0], "json.lua"), ("photo", paths[1], "photo.lua")):
            env = {"BENCH_PATH": path, "BENCH_API_KEY": api_key, "BENCH_PHOTO": str(photo),
                   "BENCH_LUA_DIR": str(stack.LUA)}
            stack.wrk(running.url, script, connections=connections, seconds=WARM_UP_SECONDS, env=env)
            cpu_before = running.cpu_seconds()
            result = stack.wrk(running.url, script, connections=connections, seconds=seconds, env=env)
            result.server_cpu_ms = 1000 * (running.cpu_seconds() - cpu_before) / max(1, result.requests)
            stack.log(f"{kind:6} {workers}w {body:5}: {result.rps:7.1f} req/s  p50 {result.p50_ms:6.1f} ms  "
                      f"p99 {result.p99_ms:6.1f} ms  server CPU {result.server_cpu_ms:.2f} ms/request  errors {result.errors}")
            results[body] = result
    return results


def run(seconds: float = 15, connections: int = 64, workers: tuple[int, ...] = (1, 2)) -> list[Figure]:
    stack.ensure_wrk()
    photo = stack.jpeg_of_size(stack.WORK / "photo-300k.jpg", PHOTO_BYTES)
    api_key = stack.create_api_key()
    figures = []
    for count in workers:
        intake = measure("intake", count, api_key, photo, seconds, connections)
        bare = measure("bare", count, api_key, photo, seconds, connections)
        figures += [Figure(count, body, intake[body], bare[body]) for body in ("json", "photo")]
    stack.reset_reports()
    return figures


def render(figures: list[Figure], seconds: float, connections: int, photo_bytes: int) -> str:
    lines = [
        f"`POST /v1/reports` against `bench/bare_app.py` (FastAPI + asyncpg, one INSERT; the upload endpoint "
        f"also streams the photo to disk), {connections} connections for {seconds:.0f} s each after a "
        f"{WARM_UP_SECONDS} s warm-up, wrk on the same machine, worker stopped.",
        "",
        "| uvicorn processes | body | intake req/s | bare req/s | ratio | intake p50 / p99 ms | bare p50 / p99 ms | server CPU ms per request, intake / bare | intake errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for figure in figures:
        body = "JSON" if figure.body == "json" else f"multipart, 1 photo ({photo_bytes // 1024} KB)"
        lines.append(
            f"| {figure.workers} | {body} | {figure.intake.rps:,.0f} | {figure.bare.rps:,.0f} | **{figure.ratio:.2f}** | "
            f"{figure.intake.p50_ms:.1f} / {figure.intake.p99_ms:.1f} | {figure.bare.p50_ms:.1f} / {figure.bare.p99_ms:.1f} | "
            f"{figure.intake.server_cpu_ms:.2f} / {figure.bare.server_cpu_ms:.2f} | {figure.intake.failed or 0} |"
        )
    met = [f for f in figures if f.ratio >= 0.6 and f.intake.p99_ms <= 100]
    lines += [
        "",
        "Server CPU per request is the server processes' CPU time over the requests answered: unlike",
        "requests/s it hardly moves when other work shares the machine.",
        "",
        f"Goal (ratio ≥ 0.6 and p99 ≤ 100 ms): met in {len(met)} of {len(figures)} rows.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--fresh", action="store_true", help="recreate the bench database first")
    args = parser.parse_args()
    if args.fresh or not stack.sql_database_exists():
        stack.fresh_database()
    figures = run(args.seconds, args.connections, tuple(args.workers))
    print(render(figures, args.seconds, args.connections, PHOTO_BYTES))


if __name__ == "__main__":
    main()
