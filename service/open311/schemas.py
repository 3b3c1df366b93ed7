"""The GeoReport v2 shapes (field names and order as the spec has them), and how our rows fill them.

Each model documents the JSON form in OpenAPI; the XML form is the same tree (see formats.py).
Datetimes are strings already in the W3C form with a zone. Reporter data is never in any of them.
"""

from typing import Literal

from pydantic import BaseModel, Field

from service.catalogue.attributes import definitions_of
from service.models import ServiceCategory
from service.models.report import OPEN_STATUSES
from service.open311.formats import w3c_datetime
from service.open311.forms import MEDIA_FIELD
from service.open311.service import TRIAGE_SERVICE_CODE, RequestContext, service_code_of

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"


class Open311Service(BaseModel):
    service_code: str
    service_name: str
    description: str | None
    metadata: bool = Field(description="True when the service has attributes: read its service definition")
    type: Literal["realtime", "batch", "blackbox"] = "realtime"
    keywords: str | None
    group: str | None


class Open311AttributeValue(BaseModel):
    key: str
    name: str


class Open311Attribute(BaseModel):
    variable: bool
    code: str
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[Open311AttributeValue]


class Open311ServiceDefinition(BaseModel):
    service_code: str
    attributes: list[Open311Attribute]


class Open311Photo(BaseModel):
    media_url: str
    thumbnail_url: str


class Open311AttributeAnswer(BaseModel):
    code: str
    value: str | int | float | list[str]


class Open311ExtendedAttributes(BaseModel):
    """Only with `extensions=true` (the common GeoReport v2 extension)."""

    tracking_code: str
    channel: str
    details_withheld: bool = Field(
        description="The citizen did not make the report public: its text, location, address, photos and "
        "answers are left out (its progress still shows), as at /v1/reports without the citizen token"
    )
    photos: list[Open311Photo]
    attributes: list[Open311AttributeAnswer]


class Open311ServiceRequest(BaseModel):
    service_request_id: str = Field(description="The tracking code, as the citizen reads it out")
    status: Literal["open", "closed"]
    status_notes: str | None
    service_name: str | None
    service_code: str | None
    description: str | None
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None
    extended_attributes: Open311ExtendedAttributes | None = None


class Open311RequestCreated(BaseModel):
    service_request_id: str = Field(description="The tracking code")
    service_notice: str | None
    account_id: str | None
    token: str = Field(description="Also usable with GET tokens/{token}")


class Open311Token(BaseModel):
    service_request_id: str
    token: str


class Open311Endpoint(BaseModel):
    specification: str
    url: str
    changeset: str
    type: Literal["production", "test"]
    formats: list[str]


class Open311Discovery(BaseModel):
    changeset: str
    contact: str
    key_service: str
    endpoints: list[Open311Endpoint]


class Open311Error(BaseModel):
    code: int
    description: str


# The POST requests body, for the OpenAPI document (the route reads the form itself, see forms.py).
FORM_FIELDS = {
    "api_key": {"type": "string", "description": "An app key (the X-API-Key header works too)"},
    "jurisdiction_id": {"type": "string"},
    "service_code": {"type": "string", "description": "From GET services"},
    "lat": {"type": "number"},
    "long": {"type": "number"},
    "address_string": {"type": "string"},
    "address_id": {"type": "string", "description": "Kept as the address text (no address repository here)"},
    "description": {"type": "string", "maxLength": 5000, "description": "Optional, as in the spec"},
    "email": {"type": "string", "description": "Kept private, never shown"},
    "device_id": {"type": "string", "description": "Accepted, not stored"},
    "account_id": {"type": "string", "description": "Echoed in the answer, not stored"},
    "first_name": {"type": "string", "description": "Kept private, never shown"},
    "last_name": {"type": "string", "description": "Kept private, never shown"},
    "phone": {"type": "string", "description": "Kept private, never shown"},
    "media_url": {"type": "string", "format": "uri"},
}
FORM_SCHEMA = {
    "type": "object",
    "required": ["api_key", "service_code"],
    "properties": FORM_FIELDS,
    "additionalProperties": {
        "type": "string",
        "description": "attribute[CODE]=value answers, attribute[CODE][]=key for each key of a multivaluelist; "
        "codes the service does not have are ignored",
    },
}
POST_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": FORM_SCHEMA},
            "multipart/form-data": {
                "schema": {
                    **FORM_SCHEMA,
                    "properties": {**FORM_FIELDS, MEDIA_FIELD: {"type": "string", "format": "binary"}},
                },
                "encoding": {MEDIA_FIELD: {"contentType": "image/*"}},
            },
        },
    }
}


def _pick(vietnamese: bool, vi: str | None, en: str | None) -> str | None:
    return (vi if vietnamese else en) or None


def service_of(category: ServiceCategory, vietnamese: bool) -> Open311Service:
    return Open311Service(
        service_code=category.code,
        service_name=_pick(vietnamese, category.name_vi, category.name_en) or category.code,
        description=_pick(vietnamese, category.description_vi, category.description_en),
        metadata=bool(category.attributes),
        keywords=", ".join(dict.fromkeys([category.name_vi, category.name_en])),
        group=None,
    )


def definition_of(category: ServiceCategory, vietnamese: bool) -> Open311ServiceDefinition:
    return Open311ServiceDefinition(
        service_code=category.code,
        attributes=[
            Open311Attribute(
                variable=attribute.get("variable", True),
                code=attribute["code"],
                datatype=attribute["datatype"],
                required=attribute["required"],
                datatype_description=_pick(
                    vietnamese, attribute.get("datatype_description_vi"), attribute.get("datatype_description_en")
                ),
                order=attribute["order"],
                description=_pick(vietnamese, attribute["description_vi"], attribute["description_en"]) or "",
                values=[
                    Open311AttributeValue(
                        key=value["key"], name=_pick(vietnamese, value["name_vi"], value["name_en"]) or ""
                    )
                    for value in attribute.get("values", [])
                ],
            )
            for attribute in definitions_of(category)
        ],
    )


def received_notice(tracking_code: str, vietnamese: bool) -> str:
    if vietnamese:
        return f"Đã tiếp nhận phản ánh. Mã tra cứu: {tracking_code}."
    return f"Report received. Tracking code: {tracking_code}."


def _notice(context: RequestContext, vietnamese: bool) -> str | None:
    report = context.report
    if context.original_tracking_code:
        if vietnamese:
            return f"Trùng với phản ánh {context.original_tracking_code}; vui lòng theo dõi phản ánh đó."
        return f"Duplicate of {context.original_tracking_code}; follow that request."
    if report.status in OPEN_STATUSES and report.due_at is not None:
        due = w3c_datetime(report.due_at)
        department = context.department
        if vietnamese:
            who = department.name_vi if department else "Thành phố"
            return f"{who} dự kiến xử lý xong trước {due}."
        who = department.name_en if department else "The city"
        return f"{who} expects to resolve it by {due}."
    return None


def _name_without(service_code: str, vietnamese: bool) -> str:
    """The name of a service the catalogue does not have (a catalogue without `other`)."""
    if service_code != TRIAGE_SERVICE_CODE:
        return service_code
    return "Chờ phân loại" if vietnamese else "Awaiting triage"


def request_of(context: RequestContext, *, base_url: str, vietnamese: bool, extensions: bool) -> Open311ServiceRequest:
    report = context.report
    shown = not context.details_withheld  # the context holds no photos of a withheld report either
    photo_links = [
        Open311Photo(
            media_url=f"{base_url}/v1/photos/{photo.id}", thumbnail_url=f"{base_url}/v1/photos/{photo.id}/thumbnail"
        )
        for photo in context.photos
    ]
    category, code = context.category, service_code_of(report)
    request = Open311ServiceRequest(
        service_request_id=report.tracking_code,
        status="open" if report.status in OPEN_STATUSES else "closed",
        status_notes=context.status_notes,
        service_name=_pick(vietnamese, category.name_vi, category.name_en)
        if category
        else _name_without(code, vietnamese),
        service_code=code,
        description=(report.description or None) if shown else None,
        agency_responsible=_pick(vietnamese, context.department.name_vi, context.department.name_en)
        if context.department
        else None,
        service_notice=_notice(context, vietnamese),
        requested_datetime=w3c_datetime(report.created_at),
        updated_datetime=w3c_datetime(report.updated_at),
        expected_datetime=w3c_datetime(report.due_at),
        address=report.address if shown else None,
        address_id=None,
        zipcode=None,
        lat=report.lat if shown else None,
        long=report.lon if shown else None,
        media_url=photo_links[0].media_url if photo_links else None,
    )
    if extensions:
        request.extended_attributes = Open311ExtendedAttributes(
            tracking_code=report.tracking_code,
            channel=report.channel,
            details_withheld=context.details_withheld,
            photos=photo_links,
            attributes=[
                Open311AttributeAnswer(code=code, value=value) for code, value in (report.attributes or {}).items()
            ]
            if shown
            else [],
        )
    return request


def dump(model: BaseModel) -> dict:
    """The wire form: fields in the spec's order, and no extended_attributes unless asked for."""
    data = model.model_dump(mode="json")
    if "extended_attributes" in data and data["extended_attributes"] is None:
        del data["extended_attributes"]
    return data
