"""The two GeoReport v2 wire formats, XML and JSON, built from the same plain data.

JSON follows the spec's "Spark convention": a list is an array (at the top level too), an object a
dict. XML is the same tree with every list item wrapped in its singular tag (<services><service>…),
built with ElementTree (so text is escaped), declared UTF-8, and without characters XML 1.0 forbids.
"""

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi.responses import Response

Format = Literal["xml", "json"]
FORMATS: tuple[str, ...] = ("xml", "json")
XML_MEDIA_TYPE = "text/xml; charset=utf-8"
JSON_MEDIA_TYPE = "application/json; charset=utf-8"

# The tag of each item of a list, by the list's own tag.
ITEM_TAGS = {
    "services": "service",
    "service_requests": "request",
    "attributes": "attribute",
    "values": "value",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
    "photos": "photo",
}

# Characters XML 1.0 cannot carry at all, even escaped (control characters other than tab/CR/LF).
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def w3c_datetime(moment: datetime | None) -> str | None:
    """ISO 8601 as the W3C note has it, with the zone: 2026-11-29T03:04:05Z."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return w3c_datetime(value)
    return _NOT_XML.sub("", str(value))


def _element(tag: str, value: Any) -> ET.Element:
    element = ET.Element(tag)
    if isinstance(value, dict):
        for key, child in value.items():
            element.append(_element(key, child))
    elif isinstance(value, list | tuple):
        item_tag = ITEM_TAGS.get(tag, "item")
        for child in value:
            element.append(_element(item_tag, child))
    else:
        element.text = _text(value)
    return element


def to_xml(root_tag: str, data: Any) -> bytes:
    body = ET.tostring(_element(root_tag, data), encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body).encode("utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return w3c_datetime(value)
    if isinstance(value, dict):
        return {key: _jsonable(child) for key, child in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(child) for child in value]
    return value


def to_json(data: Any) -> bytes:
    return json.dumps(_jsonable(data), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def render(
    response_format: str, root_tag: str, data: Any, *, status_code: int = 200, headers: dict | None = None
) -> Response:
    if response_format == "json":
        return Response(to_json(data), status_code=status_code, media_type=JSON_MEDIA_TYPE, headers=headers)
    return Response(to_xml(root_tag, data), status_code=status_code, media_type=XML_MEDIA_TYPE, headers=headers)


def render_errors(
    response_format: str, status_code: int, errors: list[tuple[int, str]], headers: dict | None = None
) -> Response:
    """The spec's error list: [{code, description}] / <errors><error><code/><description/></error></errors>."""
    data = [{"code": code, "description": description} for code, description in errors]
    return render(response_format, "errors", data, status_code=status_code, headers=headers)
