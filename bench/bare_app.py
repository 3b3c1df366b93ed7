"""The bare stack: what FastAPI + asyncpg + uvicorn give with no service on top, the yardstick for intake.

    uvicorn bench.bare_app:app --workers N --log-level warning --no-access-log

POST /bare/reports    a JSON body (validated by a small pydantic model) → one INSERT, 201 with the id
POST /bare/upload     multipart with one `photos` file, parsed as it arrives with python-multipart's streaming
                      parser: the file's bytes written straight to disk (in a thread, in batches of the size
                      intake uses), the text fields collected → one INSERT. The yardstick for a photo report.
POST /bare/upload-spooled  the same through FastAPI's UploadFile: Starlette spools the part to a temporary file,
                      then it is copied to disk in a thread (for comparison: what intake did before).
Same database (DATABASE_URL), pool size (DB_POOL_SIZE + DB_MAX_OVERFLOW) and media folder as the intake run.
"""

import os
import shutil
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import asyncpg
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from pydantic import BaseModel, Field
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

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


WRITE_BATCH_BYTES = 512 * 1024  # as service/reports/multipart.py


class StreamedUpload:
    """The parser's callbacks: text fields as text, the one file part's chunks queued for the disk."""

    def __init__(self, path: Path):
        self.path, self.file = path, None
        self.fields: dict[str, str] = {}
        self.disposition = self.header_name = self.header_value = b""
        self.name, self.is_file, self.value = "", False, bytearray()
        self.pending: list[bytes] = []
        self.pending_bytes = 0

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value_, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.part_data,
                "on_part_end": self.part_end}

    def part_begin(self) -> None:
        self.disposition, self.value = b"", bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_value_(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = self.header_value = b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        self.name, self.is_file = options.get(b"name", b"").decode(), b"filename" in options

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.is_file:
            self.pending.append(data if start == 0 and end == len(data) else memoryview(data)[start:end])
            self.pending_bytes += end - start
        else:
            self.value += data[start:end]

    def part_end(self) -> None:
        if not self.is_file:
            self.fields[self.name] = self.value.decode()

    def write_pending(self) -> None:
        if self.file is None:
            self.file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        for chunk in batch:
            self.file.write(chunk)

    def close(self) -> None:
        self.write_pending()
        self.file.close()


@app.post("/bare/upload", status_code=201)
async def upload(request: Request) -> dict:
    report_id = uuid.uuid4()
    path = MEDIA / f"{report_id}.jpg"
    _, params = parse_options_header(request.headers["content-type"])
    upload = StreamedUpload(path)
    parser = MultipartParser(params[b"boundary"], upload.callbacks())
    async for chunk in request.stream():
        parser.write(chunk)
        if upload.pending_bytes >= WRITE_BATCH_BYTES:
            await anyio.to_thread.run_sync(upload.write_pending)
    await anyio.to_thread.run_sync(upload.close)
    if parser.state != MultipartState.END or len(upload.fields.get("description", "")) < 10:
        path.unlink(missing_ok=True)
        raise HTTPException(422)
    lat, lon = upload.fields.get("lat"), upload.fields.get("lon")
    await app.state.pool.execute(INSERT, report_id, upload.fields["description"], lat and float(lat),
                                 lon and float(lon), str(path))
    return {"id": str(report_id)}


@app.post("/bare/upload-spooled", status_code=201)
async def upload_spooled(
    description: str = Form(min_length=10), lat: float | None = Form(None), lon: float | None = Form(None),
    photos: UploadFile = File(...),
) -> dict:
    report_id = uuid.uuid4()
    path = MEDIA / f"{report_id}.jpg"
    await anyio.to_thread.run_sync(_save, photos, path)
    await app.state.pool.execute(INSERT, report_id, description, lat, lon, str(path))
    return {"id": str(report_id)}
