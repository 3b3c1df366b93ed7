"""Turning an HTTP request (JSON or multipart with photos) into a ReportCreate and staged photos."""

import json
from datetime import UTC, datetime
from uuid import uuid4

import anyio
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from service.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType
from service.photos.content import SNIFF_BYTES, extension_for, sniff_image_type
from service.photos.processing import PhotoRejected, check_header
from service.photos.storage import PhotoStorage, TooLarge
from service.reports.schemas import ReportCreate
from service.reports.service import StagedPhoto
from service.settings import Settings

MAX_JSON_BYTES = 64 * 1024
PHOTO_FIELD = "photos"


def _validate(raw: object) -> ReportCreate:
    try:
        return ReportCreate.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc


async def read_json(request: Request) -> ReportCreate:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_JSON_BYTES:
            raise PayloadTooLarge(detail=f"A JSON report body may be at most {MAX_JSON_BYTES} bytes.")
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "The body is not valid JSON.", "input": None}]
        ) from exc
    if not isinstance(raw, dict):
        raise RequestValidationError(
            [{"type": "model_type", "loc": ("body",), "msg": "The body must be a JSON object.", "input": None}]
        )
    return _validate(raw)


def stage_photo(upload: UploadFile, storage: PhotoStorage, settings: Settings) -> StagedPhoto:
    """Check a photo by its bytes (not its declared type) and stream it to storage. Runs in a thread."""
    if upload.size is not None and upload.size > settings.max_photo_bytes:
        raise PayloadTooLarge(detail=f"{upload.filename}: a photo may be at most {settings.max_photo_bytes} bytes.")
    upload.file.seek(0)
    content_type = sniff_image_type(upload.file.read(SNIFF_BYTES))
    if content_type is None:
        raise UnsupportedMediaType(detail=f"{upload.filename or 'photo'} is not a JPEG, PNG, WebP or HEIC image.")
    upload.file.seek(0)
    try:  # from the header, before anything is stored: a small file may declare gigapixels
        gps = check_header(upload.file, settings.max_photo_pixels)  # and the GPS hint, from the same reading
    except PhotoRejected as exc:
        raise PayloadTooLarge("photo_dimensions_too_large", f"{upload.filename or 'photo'}: {exc.message}") from exc
    photo_id = uuid4()
    key = f"originals/{datetime.now(UTC):%Y/%m}/{photo_id}{extension_for(content_type)}"
    try:
        stored = storage.save(key, upload.file, max_bytes=settings.max_photo_bytes, content_type=content_type)
    except TooLarge as exc:
        raise PayloadTooLarge(detail=f"A photo may be at most {settings.max_photo_bytes} bytes.") from exc
    return StagedPhoto(
        id=photo_id, key=key, content_type=content_type, size_bytes=stored.size_bytes, sha256=stored.sha256, gps=gps
    )


async def read_multipart(
    request: Request, storage: PhotoStorage, settings: Settings, staged: list[StagedPhoto]
) -> ReportCreate:
    """Parse the form; photos are appended to `staged` as they are stored, so the caller can clean up."""
    try:
        form = await request.form(max_files=settings.max_photos_per_report + 1, max_fields=40, max_part_size=64 * 1024)
    except MultiPartException as exc:
        if "Too many files" in exc.message:
            raise Unprocessable("too_many_photos", PHOTO_FIELD, exc.message) from exc
        raise RequestValidationError(
            [{"type": "multipart_invalid", "loc": ("body",), "msg": exc.message, "input": None}]
        ) from exc
    try:
        fields: dict[str, str] = {}
        uploads: list[UploadFile] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != PHOTO_FIELD:
                    raise Unprocessable("validation_error", name, f"Files go in the '{PHOTO_FIELD}' field.")
                uploads.append(value)
            elif name == PHOTO_FIELD:
                raise Unprocessable("validation_error", name, "The photos field takes files.")
            else:
                fields[name] = value
        if len(uploads) > settings.max_photos_per_report:
            raise Unprocessable(
                "too_many_photos", PHOTO_FIELD, f"At most {settings.max_photos_per_report} photos per report."
            )
        data = _validate(fields)
        for upload in uploads:
            staged.append(await anyio.to_thread.run_sync(stage_photo, upload, storage, settings))
        return data
    finally:
        await form.close()


async def read_message_with_photos(
    request: Request, storage: PhotoStorage, settings: Settings, staged: list[StagedPhoto], *, max_length: int = 5000
) -> str | None:
    """A `message` plus optional `photos`, as JSON or multipart (citizen answers, after-photos)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            raw = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body",), "msg": "Invalid JSON.", "input": None}]
            ) from exc
        fields, uploads = (raw if isinstance(raw, dict) else {}), []
    elif content_type == "multipart/form-data":
        try:
            form = await request.form(
                max_files=settings.max_photos_per_report + 1, max_fields=10, max_part_size=64 * 1024
            )
        except MultiPartException as exc:
            raise Unprocessable(
                "too_many_photos" if "Too many files" in exc.message else "validation_error", PHOTO_FIELD, exc.message
            ) from exc
        try:
            fields = {k: v for k, v in form.multi_items() if not isinstance(v, UploadFile)}
            uploads = [v for k, v in form.multi_items() if isinstance(v, UploadFile) and k == PHOTO_FIELD]
            if len(uploads) > settings.max_photos_per_report:
                raise Unprocessable("too_many_photos", PHOTO_FIELD)
            for upload in uploads:
                staged.append(await anyio.to_thread.run_sync(stage_photo, upload, storage, settings))
        finally:
            await form.close()
    else:
        raise UnsupportedMediaType("unsupported_content_type")
    unknown = set(fields) - {"message"}
    if unknown:
        raise Unprocessable("validation_error", sorted(unknown)[0], "Unknown field.")
    message = fields.get("message")
    if isinstance(message, str) and "\x00" in message:
        raise Unprocessable("text_not_storable", "message")
    if message is not None and (not isinstance(message, str) or len(message.strip()) > max_length):
        raise Unprocessable("validation_error", "message", f"message must be text of at most {max_length} characters.")
    message = message.strip() if message else None
    if not message and not staged:
        raise Unprocessable("validation_error", "message", "Send a message, photos, or both.")
    return message


async def parse_report_request(
    request: Request, storage: PhotoStorage, settings: Settings, staged: list[StagedPhoto]
) -> ReportCreate:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length")
    limit = settings.max_photos_per_report * settings.max_photo_bytes + 1024 * 1024
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(detail=f"The request may be at most {limit} bytes.")
    if content_type == "application/json":
        return await read_json(request)
    if content_type == "multipart/form-data":
        return await read_multipart(request, storage, settings, staged)
    raise UnsupportedMediaType(
        "unsupported_content_type", headers={"Accept-Post": "application/json, multipart/form-data"}
    )
