"""Intake reads a JSON body with pydantic's own parser, and again in two steps when that refuses it: every
body must come out as the two-step read (json.loads, then the model) makes it, a report or the same 422."""

import pytest
from fastapi.exceptions import RequestValidationError

from service.reports.intake import read_in_two_steps, report_of_json

VALID = '"description": "Đèn đường trước chợ Bến Thành bị tắt ba đêm nay", "lat": 10.7725, "lon": 106.698'

BODIES = [
    "{" + VALID + "}",
    "{" + VALID + ', "channel": "web", "is_public": false, "title": "  Đèn  ", "address": "  "}',
    # Repeated keys: the last one counts.
    '{"description": "đèn tắt ở đầu hẻm 12", ' + VALID + ', "lat": 10.78}',
    # Numbers as Python reads them: big, tiny, as text, integers in a float field.
    "{" + VALID + ', "attributes": {"a": 123456789012345678901234567890, "b": 1e-400, "c": 2.5e3, "d": -0}}',
    '{"description": "Cây đổ chắn ngang đường", "lat": "10.7725", "lon": 106}',
    '{"description": "Cây đổ chắn ngang đường", "lat": 1e400, "lon": 106.7}',
    "{" + VALID + ', "attributes": {"x": [1e400]}}',
    "{" + VALID + ', "attributes": {"x": NaN}}',
    '{"description": "Cây đổ chắn ngang đường", "lat": NaN, "lon": 106.7}',
    '{"description": "Cây đổ chắn ngang đường", "lat": Infinity, "lon": 106.7}',
    # Booleans and their look-alikes.
    "{" + VALID + ', "is_public": "yes"}',
    "{" + VALID + ', "is_public": 0}',
    "{" + VALID + ', "is_public": 2}',
    '{"description": "Cây đổ chắn ngang đường", "lat": true, "lon": 106.7}',
    # Escapes and characters.
    '{"description": "Rác \\u0111\\u1ed5 b\\u1eeba b\\u00e3i \\ud83d\\ude00 \\t \\n", "lat": 10.7, "lon": 106.7}',
    '{"description": "Rác đổ bừa bãi\tgiữa đường", "lat": 10.7, "lon": 106.7}',  # a raw tab in a string
    '{"description": "Rác đổ bừa bãi\x01giữa đường", "lat": 10.7, "lon": 106.7}',
    "\ufeff{" + VALID + "}",  # a byte order mark
    "{" + VALID + "}  \n",
    "{" + VALID + "} x",
    "{" + VALID + ",}",
    "[{" + VALID + "}]",
    '"text"',
    "null",
    "",
    "{" + VALID + ', "unknown": 1}',
    "{" + VALID + ', "attributes": "{\\"a\\": 1}"}',
    "{" + VALID + ', "attributes": "[1]"}',
    '{"description": "ngắn", "lat": 10.7, "lon": 106.7}',
    '{"description": "..........", "lat": 10.7, "lon": 106.7}',
    "{" + VALID + ', "reporter_phone": "0901234567", "reporter_email": ""}',
    "{" + VALID + ', "reporter_phone": "not a phone"}',
]


def _outcome(read) -> object:
    try:
        return read().model_dump()
    except RequestValidationError as exc:  # a validator's error comes as its exception: compared as text
        return [{**error, "ctx": {k: str(v) for k, v in error.get("ctx", {}).items()}} for error in exc.errors()]


@pytest.mark.parametrize("text", BODIES)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_a_json_body_reads_as_json_loads_then_the_model_read_it(text: str, encoding: str) -> None:
    body = text.encode(encoding, errors="surrogatepass")
    got, expected = _outcome(lambda: report_of_json(body)), _outcome(lambda: read_in_two_steps(body))
    # As text: floats as floats, ints as ints, -0.0 as -0.0, and NaN (which equals nothing) as NaN.
    assert repr(got) == repr(expected)


def test_the_fast_read_is_the_one_taken_for_an_ordinary_report() -> None:
    report = report_of_json(("{" + VALID + ', "attributes": {"n": 3, "keys": ["a", "b"]}}').encode())
    assert report.lat == 10.7725 and report.attributes == {"n": 3, "keys": ["a", "b"]}
