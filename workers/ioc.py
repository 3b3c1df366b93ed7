"""The IOC's rollup, kept up to date by a cron job (every 15 seconds, one worker at a time)."""

from zoneinfo import ZoneInfo

from service.ioc import rollup


async def refresh_ioc_rollup(ctx: dict) -> int:
    async with ctx["sessions"]() as session:
        days = await rollup.refresh(session, ZoneInfo(ctx["settings"].sla_timezone))
        await session.commit()
    return days
