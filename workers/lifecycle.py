"""Timed lifecycle jobs: each a few lines around a service rule (service.lifecycle.sweeps)."""

import logging

from service.lifecycle import sweeps
from service.models.types import utcnow

log = logging.getLogger(__name__)


async def sweep_sla(ctx: dict) -> int:
    async with ctx["sessions"]() as session:
        count = await sweeps.mark_sla(session, utcnow())
        await ctx["handoff"].commit(session)
    if count:
        log.info("SLA sweep updated %d reports", count)
    return count


async def announce_deadlines_near(ctx: dict) -> int:
    async with ctx["sessions"]() as session:
        count = await sweeps.mark_deadlines_near(session, ctx["settings"], utcnow())
        await ctx["handoff"].commit(session)
    if count:
        log.info("told subscribers of %d near deadlines", count)
    return count


async def close_resolved_tickets(ctx: dict) -> int:
    async with ctx["sessions"]() as session:
        count = await sweeps.close_resolved(session, ctx["settings"], utcnow())
        await ctx["handoff"].commit(session)
    if count:
        log.info("closed %d resolved tickets", count)
    return count


async def erase_personal_data(ctx: dict) -> int:
    async with ctx["sessions"]() as session:
        count = await sweeps.erase_personal_data(session, ctx["settings"], utcnow())
        await ctx["handoff"].commit(session)
    if count:
        log.info("erased reporter contact data of %d closed tickets", count)
    return count
