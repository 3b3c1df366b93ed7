"""The processing of one report: classify → priority → duplicates → jurisdiction → department → SLA."""

from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from service.models import Report


async def process(session: AsyncSession, report_id: UUID, ctx: dict) -> str:
    report = await session.get(Report, report_id)
    if report is None:
        return "missing"
    if report.status != "received":
        return "already-processed"
    return "pending"
