"""A retry's fingerprint is the one its first try got: the same hash of the same canonical body.

Photos enter it as their sizes; reports stored while they entered it as their SHA-256 keep that form,
which `fingerprint_of` still computes the same."""

import hashlib
import json
import math
import random
import typing
import uuid

from pydantic import ValidationError

from service.open311.forms import ServiceRequestCreate
from service.reports.idempotency import fingerprint_of
from service.reports.schemas import ReportCreate
from service.reports.service import StagedPhoto, fingerprint


def fingerprint_as_first_written(data: ReportCreate, photo_entries: list, extras: dict | None = None) -> str:
    fields = data.model_dump(mode="json", exclude={"attributes"} if data.attributes is None else None)
    body = {"fields": fields, "photos": photo_entries}
    if extras:
        body["extras"] = extras
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


TEXTS = [
    "Đèn đường trước chợ Bến Thành bị tắt ba đêm nay",
    "Duong Nguyen Hue ngap nuoc sau mua",
    'Cống "nghẹt" \\ rác\tthải\n\u00a0ở góc đường',
    "Ổ gà 😀 lớn giữa đường Lê Lợi \u2028 xe máy dễ té",
    "cafe\u0301 và ﬁ, İ, ß, \x7f, \u200b",
    "  spaces around  ",
]
# An answer of each kind the catalogue asks for (text, string, number, datetime, single and multi-value
# lists), and what a JSON body may carry instead: nested values, NaN and infinities (json.loads takes them).
ANSWERS = [
    "Rác sinh hoạt",
    "household",
    ["household", "bulky"],
    [],
    3,
    -0.0,
    2.5,
    1e-300,
    1.7976931348623157e308,
    10**30,
    0.1 + 0.2,
    "2026-12-07T09:30:00+07:00",
    True,
    None,
    {"nested": {"b": 1, "a": [1.5, "x", None]}},
    math.nan,
    math.inf,
    -math.inf,
]


def random_float(draw: random.Random, low: float, high: float) -> float | int:
    return draw.choice([draw.uniform(low, high), round(draw.uniform(low, high), 4), int(draw.uniform(low, high)), 0.0])


def random_body(draw: random.Random) -> dict:
    body: dict[str, typing.Any] = {"description": draw.choice(TEXTS) + str(draw.random())}
    optional = {
        "title": lambda: draw.choice([*TEXTS, "", "  "])[:200],
        "service_code": lambda: draw.choice(["streetlight", "waste", "pothole", "Mã-dịch-vụ", ""]),
        "address": lambda: draw.choice([*TEXTS, "12 Lê Lợi, Quận 1"]),
        "channel": lambda: draw.choice(["app", "web", "hotline", "zalo", "email", "open311"]),
        "reporter_name": lambda: draw.choice(["Nguyễn Văn A", "", 'O\'Brien "Bob"']),
        "reporter_phone": lambda: draw.choice(["0901234567", "+84 (28) 3823-4567", ""]),
        "reporter_email": lambda: draw.choice(["dan@example.vn", "người@ví-dụ.vn", ""]),
        "is_public": lambda: draw.choice([True, False]),
        "attributes": lambda: {
            draw.choice(["waste_type", "count", "seen_at", "mô_tả", "x" * 63]) + str(n): draw.choice(ANSWERS)
            for n in range(draw.randint(0, 6))
        },
    }
    for name, value in optional.items():
        if draw.random() < 0.6:
            body[name] = value()
    if draw.random() < 0.7:  # a point is both or neither
        body["lat"], body["lon"] = random_float(draw, -90, 90), random_float(draw, -180, 180)
    if "attributes" in body and draw.random() < 0.2:  # as a multipart form sends them: JSON text
        body["attributes"] = json.dumps(body["attributes"], ensure_ascii=draw.random() < 0.5)
    return body


def test_fingerprint_is_the_one_first_written_for_every_kind_of_report():
    draw = random.Random(16)
    compared = 0
    for _ in range(4000):
        try:
            # Open311's form has the same fields, its description optional.
            data = draw.choice([ReportCreate, ServiceRequestCreate]).model_validate(random_body(draw))
        except ValidationError:
            continue
        photos = [
            StagedPhoto(uuid.uuid4(), "key", "image/jpeg", draw.randint(1, 10**7)) for _ in range(draw.randint(0, 3))
        ]
        sizes = [photo.size_bytes for photo in photos]
        hashes = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(len(photos))]
        extras = draw.choice(
            [None, {}, {"media_url": "https://ví-dụ.vn/ảnh.jpg"}, {"attributes": {"count": "3", "kind": ["a", "b"]}}]
        )
        assert fingerprint(data, photos, extras) == fingerprint_as_first_written(data, sizes, extras), data
        # The older form, of the photos' hashes (the same as the new one for a report without photos).
        assert fingerprint_of(data, hashes, extras) == fingerprint_as_first_written(data, hashes, extras), data
        compared += 1
    assert compared > 3000


def test_fingerprint_reads_only_fields_pydantic_gives_back_unchanged():
    """What lets fingerprint read the fields from the model: were a field added that pydantic's JSON
    mode would change (a date, a float that may be NaN, a serializer of its own), this says so."""
    plain = {str, float, bool, type(None)}
    for name, field in [*ReportCreate.model_fields.items(), *ServiceRequestCreate.model_fields.items()]:
        if name == "attributes":
            continue
        annotation = field.annotation
        kinds = (annotation,) if typing.get_origin(annotation) is typing.Literal else typing.get_args(annotation)
        kinds = kinds or (annotation,)
        for kind in kinds:
            if typing.get_origin(kind) is typing.Literal:
                assert all(type(value) is str for value in typing.get_args(kind)), name
            else:
                assert kind in plain, (name, kind)
        if float in kinds:
            assert any(getattr(rule, "allow_inf_nan", None) is False for rule in field.metadata), name
    for model in (ReportCreate, ServiceRequestCreate):
        decorators = model.__pydantic_decorators__
        assert not model.model_computed_fields
        assert not decorators.field_serializers and not decorators.model_serializers
