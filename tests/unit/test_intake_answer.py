"""The intake answer is written without its pydantic model: it must read exactly as the model writes it."""

from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest

from service.reports.codes import citizen_token
from service.reports.routes import _created_body
from service.reports.schemas import ReportCreated


@pytest.mark.parametrize(
    "created_at",
    [
        datetime(2026, 12, 7, 2, 51, 44, 123000, tzinfo=UTC),
        datetime(2026, 12, 7, 2, 51, 44, tzinfo=UTC),  # no fraction: none written
        datetime(2026, 12, 7, 2, 51, 44, 5, tzinfo=UTC),
        datetime(2026, 12, 7, 9, 51, 44, 5, tzinfo=timezone(timedelta(hours=7))),  # an offset stays an offset
    ],
)
@pytest.mark.parametrize(
    "url",
    [
        "https://1022.example.vn/v1/reports/ABCD-EFGH",
        # A base URL an operator set with characters JSON escapes, and some it does not.
        'https://phản-ánh.example.vn/a"b\\c\td/v1/reports/ABCD-EFGH',
    ],
)
def test_intake_answer_is_byte_for_byte_what_the_report_created_model_writes(created_at: datetime, url: str) -> None:
    report_id = uuid4()
    model = ReportCreated(
        id=report_id,
        tracking_code="ABCD-EFGH",
        status="received",
        citizen_token=citizen_token("s3cret", report_id),
        created_at=created_at,
        url=url,
    )
    written = _created_body(report_id, "ABCD-EFGH", "received", created_at, url, "s3cret")
    assert written == model.model_dump_json().encode()
