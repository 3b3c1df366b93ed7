"""The ticket export as a CSV file that Excel opens as it is, in Vietnam.

Excel reads a CSV without a byte-order mark in the machine's code page (Vietnamese text turns into
mojibake), shows times as they were written, and runs a cell starting with `=`, `+`, `-` or `@` as a
formula. So the file starts with the UTF-8 BOM, times are written as the city's wall clock
(SLA_TIMEZONE, in a form Excel reads as a date and time), and such cells are prefixed with `'`.
Category, department and status names are in Vietnamese beside their codes. Nothing personal: no
reporter contact. The rows come from the list's own query and visibility rule (service.tickets.service).
"""

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth.subject import AuthSubject
from service.lifecycle.events import status_words
from service.models import Department, Report, ServiceCategory
from service.tickets import service

BOM = "\ufeff"
CHUNK_CHARACTERS = 64 * 1024
# Cells spreadsheets would run as formulas (tab and carriage return too: some start a formula after them).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def file_name(now: datetime, zone: ZoneInfo) -> str:
    """`phan-anh-2026-12-06.csv`: the export's day in the city."""
    return f"phan-anh-{now.astimezone(zone).date().isoformat()}.csv"


def cell(value: Any, zone: ZoneInfo) -> str:
    """One value as Excel should show it: city time, and never a formula."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def columns(names: dict[str, dict[str, str]]) -> list[tuple[str, Callable[[Report], Any]]]:
    """(header, value of a report) for every column; `names` maps catalogue codes to Vietnamese names."""

    def named(kind: str, attribute: str) -> Callable[[Report], Any]:
        return lambda report: names[kind].get(getattr(report, attribute) or "", "")

    def field(attribute: str) -> Callable[[Report], Any]:
        return lambda report: getattr(report, attribute)

    return [
        ("tracking_code", field("tracking_code")),
        ("status", field("status")),
        ("status_name", lambda report: status_words(report.status, vietnamese=True)),
        ("service_code", field("service_code")),
        ("category_name", named("category", "service_code")),
        ("department_code", field("department_code")),
        ("department_name", named("department", "department_code")),
        ("jurisdiction_code", field("jurisdiction_code")),
        ("priority", field("priority")),
        ("sla_state", field("sla_state")),
        ("title", field("title")),
        ("description", field("description")),
        ("address", field("address")),
        ("created_at", field("created_at")),
        ("acknowledged_at", field("acknowledged_at")),
        ("due_at", field("due_at")),
        ("resolved_at", field("resolved_at")),
        ("closed_at", field("closed_at")),
        ("transfer_count", field("transfer_count")),
        ("supporter_count", field("supporter_count")),
        ("citizen_rating", field("citizen_rating")),
    ]


async def catalogue_names(session: AsyncSession) -> dict[str, dict[str, str]]:
    """Vietnamese names of every category and department (small tables, read once per export)."""
    categories = (await session.exec(select(ServiceCategory.code, ServiceCategory.name_vi))).all()
    departments = (await session.exec(select(Department.code, Department.name_vi))).all()
    return {"category": dict(categories), "department": dict(departments)}


def _text(rows: Iterable[list[str]], delimiter: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    return buffer.getvalue()


async def chunks(
    session: AsyncSession,
    subject: AuthSubject,
    filters: service.TicketFilters,
    *,
    sort: str,
    zone: ZoneInfo,
    delimiter: str = ",",
) -> AsyncIterator[str]:
    """The file in pieces of about CHUNK_CHARACTERS: the BOM and header first, then the tickets this
    subject may see, read in keyset pages (memory stays flat however many there are)."""
    table = columns(await catalogue_names(session))
    pending = [[header for header, _ in table]]
    size = 0
    first = True
    async for report in service.iterate_all(session, subject, filters, sort=sort):
        row = [cell(value(report), zone) for _, value in table]
        pending.append(row)
        size += sum(len(value) for value in row)
        if size > CHUNK_CHARACTERS:
            yield (BOM if first else "") + _text(pending, delimiter)
            first, pending, size = False, [], 0
    yield (BOM if first else "") + _text(pending, delimiter)
