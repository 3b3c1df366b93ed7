"""Reading a GeoReport v2 POST requests body: application/x-www-form-urlencoded as the spec has it,
or multipart/form-data with the photo in `media` (the common media extension).

Spec names become ours (long → lon, address_string → address, first_name + last_name →
reporter_name, …) and our validation errors are told back in the spec's names.
"""

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError

from service.catalogue.attributes import Answer
from service.errors import AppError, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from service.photos.storage import PhotoStorage
from service.reports import multipart
from service.reports.multipart import FormRules
from service.reports.schemas import Channel, ReportCreate
from service.reports.service import StagedPhoto
from service.settings import Settings

MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 200
MEDIA_FIELD = "media"
ATTRIBUTE_KEY = re.compile(r"^attribute\[([^\[\]]+)\](\[\])?$")
# Our field name -> the spec's, for error messages.
SPEC_NAMES = {
    "lon": "long",
    "address": "address_string",
    "reporter_name": "first_name",
    "reporter_phone": "phone",
    "reporter_email": "email",
}


class ServiceRequestCreate(ReportCreate):
    """A report as GeoReport v2 has it: `description` is optional (a service_code and a location make a
    request), of any length up to our limit. Without one, the citizen's category decides; with `other`
    (or a text too thin to read) a dispatcher triages it."""

    description: str = Field(default="", max_length=5000)
    channel: Channel = "open311"  # type: ignore[assignment]  # the one model that may say open311


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Answer] = field(default_factory=dict)
    refused_photo: AppError | None = None  # a photo refused for its content: answered after the fields' errors

    def raise_refused_photo(self) -> None:
        if self.refused_photo is not None:
            raise self.refused_photo

    def get(self, name: str) -> str | None:
        """A blank value is no value ("Optional means empty = absent" in the spec)."""
        value = self.fields.get(name)
        return value.strip() if value and value.strip() else None


@dataclass(frozen=True)
class ServiceRequestForm:
    data: ReportCreate
    attributes: dict[str, Answer]
    media_url: str | None
    account_id: str | None


def _add(form: Form, name: str, value: str) -> None:
    match = ATTRIBUTE_KEY.match(name)
    if match is None:
        form.fields.setdefault(name, value)  # the first of repeated fields wins
        return
    code, many = match.group(1), match.group(2)
    previous = form.attributes.get(code)
    if previous is None:
        form.attributes[code] = [value] if many else value
    else:  # repeated: a list, whether or not the client wrote the []
        form.attributes[code] = (previous if isinstance(previous, list) else [str(previous)]) + [value]


async def read_form(request: Request, storage: PhotoStorage, settings: Settings, staged: list[StagedPhoto]) -> Form:
    """The fields and attribute answers of the body; a photo in `media` goes straight into storage, appended
    to `staged` (the caller deletes them if the request fails). A refused photo is the form's
    `refused_photo`, raised by the caller once the fields are checked."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form = Form()
    if content_type == "application/x-www-form-urlencoded":
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_FORM_BYTES:
                raise PayloadTooLarge(detail=f"A form body may be at most {MAX_FORM_BYTES} bytes.")
        try:
            # errors="strict": a %-escape that is not UTF-8 would be stored as U+FFFD.
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
        except (UnicodeDecodeError, ValueError) as exc:
            raise _invalid("body", "The form body is not valid UTF-8 form data.") from exc
        for name, value in pairs:
            _add(form, name, value)
        return form
    if content_type == "multipart/form-data":
        declared = request.headers.get("content-length")
        limit = settings.max_photos_per_report * settings.max_photo_bytes + 1024 * 1024
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(detail=f"The request may be at most {limit} bytes.")
        rules = FormRules(
            file_field=MEDIA_FIELD,
            max_files=settings.max_photos_per_report,
            max_fields=MAX_FIELDS,
            stray_file=lambda name: _invalid(name, f"Files go in the '{MEDIA_FIELD}' field."),
            max_field_bytes=MAX_FORM_BYTES,
        )
        try:
            parsed = await multipart.read_form(request, storage, settings, rules, staged)
        except multipart.FormInvalid as exc:
            if isinstance(exc, multipart.TooManyFiles):
                raise Unprocessable("too_many_photos", MEDIA_FIELD, exc.message) from exc
            raise _invalid("body", exc.message) from exc
        for name, value in parsed.fields:
            _add(form, name, value)
        form.refused_photo = parsed.refused_photo
        return form
    raise UnsupportedMediaType(
        "unsupported_content_type",
        "Send application/x-www-form-urlencoded, or multipart/form-data with the photo in 'media'.",
        headers={"Accept-Post": "application/x-www-form-urlencoded, multipart/form-data"},
    )


def _invalid(name: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("body", name), "msg": message, "input": None}])


def service_request_form(form: Form) -> ServiceRequestForm:
    """The spec's fields as a ReportCreate on the open311 channel; errors name the spec's fields."""
    if not form.get("service_code"):
        raise _invalid("service_code", "service_code was not provided.")
    location_given = (form.get("lat") and form.get("long")) or form.get("address_string") or form.get("address_id")
    if not location_given:
        raise _invalid("lat", "A location is required: lat and long, or address_string, or address_id.")
    media_url = form.get("media_url")
    if media_url:
        parts = urlsplit(media_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(media_url) > 2000:
            raise _invalid("media_url", "media_url must be an http(s) URL of at most 2000 characters.")
    name = " ".join(part for part in (form.get("first_name"), form.get("last_name")) if part) or None
    raw = {
        "description": form.get("description"),
        "service_code": form.get("service_code"),
        "lat": form.get("lat"),
        "lon": form.get("long"),
        # We keep no address repository: an address_id alone is kept as the address text.
        "address": form.get("address_string") or form.get("address_id"),
        "reporter_name": name,
        "reporter_phone": form.get("phone"),
        "reporter_email": form.get("email"),
        "channel": "open311",
    }
    try:
        data = ServiceRequestCreate.model_validate({key: value for key, value in raw.items() if value is not None})
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {**error, "loc": ("body", *(SPEC_NAMES.get(str(part), part) for part in error["loc"]))}
                for error in exc.errors()
            ]
        ) from exc
    return ServiceRequestForm(
        data=data, attributes=form.attributes, media_url=media_url, account_id=form.get("account_id")
    )
