"""The SLA sweep: mark tickets at risk (75 %) and overdue (100 %), and escalate overdue ones."""

import logging

from service.models import Department
from service.models.types import utcnow
from service.reports.service import record_event
from service.sla.service import reports_needing_sla_update

log = logging.getLogger(__name__)


async def sweep_sla(ctx: dict) -> int:
    now = utcnow()
    async with ctx["sessions"]() as session:
        reports = await reports_needing_sla_update(session, now)
        for report in reports:
            if report.due_at and report.due_at <= now:
                report.sla_state = "overdue"
                record_event(session, report, "sla_breached", public=False, data={"due_at": report.due_at.isoformat()})
                department = await session.get(Department, report.department_code) if report.department_code else None
                if department and department.parent_code and report.escalated_at is None:
                    report.escalated_at = now
                    report.escalated_to_department_code = department.parent_code
                    record_event(
                        session, report, "escalated", public=False,
                        data={"from": department.code, "to": department.parent_code, "reason": "overdue"},
                    )
            else:
                report.sla_state = "at_risk"
                record_event(session, report, "sla_at_risk", public=False, data={"due_at": report.due_at.isoformat()})
            session.add(report)
        await session.commit()
    if reports:
        log.info("SLA sweep updated %d reports", len(reports))
    return len(reports)
