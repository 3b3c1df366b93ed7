"""The bare stack: what FastAPI + asyncpg + uvicorn give with no service on top, the yardstick for intake.

    uvicorn bench.bare_app:app --workers N --log-level warning --no-access-log

POST /bare/reports    a JSON body (validated by a small pydantic model) → one INSERT, 201 with the id
POST /bare/upload     multipart with one `photos` file → the file streamed to disk (FastAPI's UploadFile,
                      copied in a thread as intake does) + one INSERT
Same database (DATABASE_URL), pool size (DB_POOL_SIZE + DB_MAX_OVERFLOW) and media folder as the intake run.
"""

import os
import shutil
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import asyncpg
from fastapi import FastAPI, File, Form, UploadFile
from pydantic import BaseModel, Field

DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/intake_bench_intake").replace(
    "postgresql+asyncpg://", "postgresql://"
)
POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "20")) + int(os.environ.get("DB_MAX_OVERFLOW", "0"))
MEDIA = Path(os.environ.get("MEDIA_DIR", "var/bench/media")) / "bare"

TABLE = """
CREATE TABLE IF NOT EXISTS bench_bare_reports (
    id uuid PRIMARY KEY,
    description text NOT NULL,
    lat double precision,
    lon double precision,
    photo_path text,
    created_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
)
"""


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.pool = await asyncpg.create_pool(DSN, min_size=2, max_size=POOL_SIZE)
    async with app.state.pool.acquire() as connection:
        try:
            await connection.execute(TABLE)
        except asyncpg.UniqueViolationError:  # two worker processes creating it at once
            pass
    MEDIA.mkdir(parents=True, exist_ok=True)
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


class BareReport(BaseModel):
    description: str = Field(min_length=10, max_length=5000)
    lat: float | None = None
    lon: float | None = None
    channel: str = "app"


INSERT = "INSERT INTO bench_bare_reports (id, description, lat, lon, photo_path) VALUES ($1, $2, $3, $4, $5)"


@app.get("/bare/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@app.post("/bare/reports", status_code=201)
async def create_report(body: BareReport) -> dict:
    report_id = uuid.uuid4()
    await app.state.pool.execute(INSERT, report_id, body.description, body.lat, body.lon, None)
    return {"id": str(report_id)}


def _save(upload: UploadFile, path: Path) -> None:
    upload.file.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(upload.file, out, 64 * 1024)


@app.post("/bare/upload", status_code=201)
async def upload(
    description: str = Form(min_length=10), lat: float | None = Form(None), lon: float | None = Form(None),
    photos: UploadFile = File(...),
) -> dict:
    report_id = uuid.uuid4()
    path = MEDIA / f"{report_id}.jpg"
    await anyio.to_thread.run_sync(_save, photos, path)
    await app.state.pool.execute(INSERT, report_id, description, lat, lon, str(path))
    return {"id": str(report_id)}
