"""What apps send and what they get back for reports."""

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from service.body_limits import unstorable_json_text
from service.models.report import CHANNELS

Channel = Literal["app", "web", "hotline", "zalo", "email", "open311"]
assert set(CHANNELS) == set(Channel.__args__)  # type: ignore[attr-defined]
# What a /v1 client may say its report came through: `open311` is given by the Open311 endpoint only,
# so the per-channel counts say which reports really came through it.
ClientChannel = Literal["app", "web", "hotline", "zalo", "email"]

PHONE = re.compile(r"^\+?[0-9][0-9 .\-()]{5,19}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")

MAX_ATTRIBUTES = 50
AttributeCode = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# Text, a number, or the keys chosen in a multivaluelist. Any JSON value passes the schema: an answer of
# the wrong kind is judged by service/catalogue/attributes.py, the same rule as Open311's attribute[code]
# fields, so it is an `attribute_invalid` naming `attributes.<code>` like any other bad answer.
# The spec still documents the answers that can be right.
AttributeAnswer = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "integer"},
                {"type": "number"},
                {"items": {"type": "string"}, "maxItems": MAX_ATTRIBUTES, "type": "array"},
            ]
        }
    ),
]


class ReportCreate(BaseModel):
    """A new report. Give lat/lon, or an address, or a photo that carries GPS coordinates."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    description: str = Field(
        min_length=10, max_length=5000, examples=["Đèn đường trước nhà số 12 Lê Lợi bị tắt 3 ngày nay"]
    )
    title: str | None = Field(default=None, max_length=200)
    service_code: str | None = Field(default=None, max_length=64, description="The citizen's own choice of field")
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    address: str | None = Field(default=None, min_length=3, max_length=500)
    channel: ClientChannel = "app"
    reporter_name: str | None = Field(default=None, max_length=200)
    # The patterns are the validators' below, declared (empty means none given).
    reporter_phone: str | None = Field(
        default=None, max_length=32, json_schema_extra={"pattern": "^$|" + PHONE.pattern}
    )
    reporter_email: str | None = Field(
        default=None, max_length=254, json_schema_extra={"pattern": "^$|" + EMAIL.pattern}
    )
    is_public: bool = True
    attributes: dict[AttributeCode, AttributeAnswer] | None = Field(
        default=None,
        max_length=MAX_ATTRIBUTES,
        description="Answers to the questions of the category in `service_code` (its `attributes` in "
        "GET /v1/categories), by attribute code: text, a number, or a list of keys for a multivaluelist. "
        "Required ones are enforced whenever `service_code` is given; a code the category lacks is a 422. "
        "In multipart, this object as JSON text.",
        examples=[{"waste_type": ["household", "bulky"]}],
    )

    @field_validator("reporter_phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value and not PHONE.match(value):
            raise ValueError("not a phone number")
        return value or None

    @field_validator("reporter_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value and not EMAIL.match(value):
            raise ValueError("not an email address")
        return value or None

    @field_validator("lat", "lon", mode="before")
    @classmethod
    def _not_true_or_false(cls, value: object) -> object:
        # pydantic would take true as 1.0: a report filed at a made-up place.
        if isinstance(value, bool):
            raise ValueError("a coordinate is a number, not true or false")
        return value

    @field_validator("description")
    @classmethod
    def _has_words(cls, value: str) -> str:
        # Ten zero-width spaces or dots pass the length check and tell the city nothing.
        if not any(character.isalnum() for character in value):
            raise ValueError("the description has no letters or digits")
        return value

    @field_validator("title", "address", "reporter_name", "service_code", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes_as_json_text(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:  # a multipart form field: only an object's JSON text is an answer
            parsed = json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack
            parsed = None
        if not isinstance(parsed, dict):
            raise ValueError("attributes must be a JSON object")
        if problem := unstorable_json_text(value.encode()):  # JSON bodies are checked on the way in
            raise ValueError(problem)
        return parsed

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # Form fields come here unchecked (JSON bodies are checked on the way in): no database stores NUL.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text may not contain NUL (\\u0000)")
        return value

    @model_validator(mode="after")
    def _both_coordinates(self) -> "ReportCreate":
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together")
        return self


class ReportCreated(BaseModel):
    id: UUID
    tracking_code: str
    status: str
    citizen_token: str = Field(description="Keep it: with the tracking code it lets the citizen answer and rate.")
    created_at: datetime
    url: str


class PhotoPublic(BaseModel):
    id: UUID
    url: str
    thumbnail_url: str
    ready: bool


class NamedRef(BaseModel):
    code: str
    name: str


class TimelineEntry(BaseModel):
    code: str = Field(description="Stable code of what happened (status_changed, public_reply, transferred…)")
    at: datetime
    message: str | None = Field(default=None, description="In the language of Accept-Language (vi by default, en)")
    status: str | None = Field(default=None, description="The status the report reached, for a status change")
    previous_status: str | None = Field(default=None, description="The status before it, for a status change")


class OriginalProgress(BaseModel):
    """For a duplicate: where the report it repeats has got to."""

    tracking_code: str
    status: str
    department: NamedRef | None
    due_at: datetime | None
    supporter_count: int


class ReportPublic(BaseModel):
    """The citizen's view: never any reporter personal data, never internal notes.

    A report its citizen did not make public shows its text, exact location, photos and timeline
    messages only with the citizen's token (`X-Citizen-Token`); without it, only how it is getting on.
    """

    tracking_code: str
    status: str
    details_withheld: bool = Field(
        default=False,
        description="True for a non-public report asked for without its citizen token: no text, place or photos",
    )
    title: str | None
    description: str | None
    category: NamedRef | None
    department: NamedRef | None
    priority: str
    lat: float | None
    lon: float | None
    address: str | None
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None
    duplicate_of: str | None = Field(default=None, description="Tracking code of the original report")
    original: OriginalProgress | None = None
    supporter_count: int
    photos: list[PhotoPublic]
    timeline: list[TimelineEntry]
