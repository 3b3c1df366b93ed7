"""Turning an HTTP request (JSON or multipart with photos) into a ReportCreate and staged photos."""

import json

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType
from service.photos.storage import PhotoStorage
from service.reports.multipart import FormInvalid, FormRules, TooManyFiles, read_form
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
    return report_of_json(body)


def report_of_json(body: bytes | bytearray) -> ReportCreate:
    """The report a JSON body holds, or the 422 that says why not.

    pydantic reads the JSON itself first: half the CPU of json.loads and then validating the objects it
    made. A body it refuses is read again in two steps, so that every refusal is worded as before (the
    body not JSON, not an object, a field's own error). Both reads take the same values: the last of a
    repeated key, a number as Python's json reads it (tests/unit/test_intake_json.py)."""
    try:
        return ReportCreate.model_validate_json(body)
    except ValidationError:
        return read_in_two_steps(body)


def read_in_two_steps(body: bytes | bytearray) -> ReportCreate:
    """json.loads, then the model: what words a refused body's 422."""
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


def _refusal(exc: FormInvalid, field: str) -> Exception:
    if isinstance(exc, TooManyFiles):
        return Unprocessable("too_many_photos", field, exc.message)
    return RequestValidationError([{"type": "multipart_invalid", "loc": ("body",), "msg": exc.message, "input": None}])


def _stray_file(name: str) -> Exception:
    return Unprocessable("validation_error", name, f"Files go in the '{PHOTO_FIELD}' field.")


async def read_multipart(
    request: Request, storage: PhotoStorage, settings: Settings, staged: list[StagedPhoto]
) -> ReportCreate:
    """Parse the form, photos straight into storage; they are appended to `staged` as they are stored, so the
    caller can clean up."""
    rules = FormRules(
        file_field=PHOTO_FIELD, max_files=settings.max_photos_per_report, max_fields=40, stray_file=_stray_file
    )
    try:
        form = await read_form(request, storage, settings, rules, staged)
    except FormInvalid as exc:
        raise _refusal(exc, PHOTO_FIELD) from exc
    fields: dict[str, str] = {}
    for name, value in form.fields:
        if name == PHOTO_FIELD:
            raise Unprocessable("validation_error", name, "The photos field takes files.")
        fields[name] = value
    data = _validate(fields)
    form.raise_refused_photo()
    return data


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
        fields = raw if isinstance(raw, dict) else {}
    elif content_type == "multipart/form-data":
        rules = FormRules(file_field=PHOTO_FIELD, max_files=settings.max_photos_per_report, max_fields=10)
        try:
            form = await read_form(request, storage, settings, rules, staged)
        except FormInvalid as exc:
            code = "too_many_photos" if isinstance(exc, TooManyFiles) else "validation_error"
            raise Unprocessable(code, PHOTO_FIELD, exc.message) from exc
        form.raise_refused_photo()
        fields = dict(form.fields)
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
