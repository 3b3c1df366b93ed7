"""Every row-visibility rule for tickets, in one place."""

from uuid import UUID

from sqlalchemy import false, or_, true
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth.subject import DEPARTMENT_STAFF_ROLES, AuthSubject
from service.models import Department, Report

# Roles that may read tickets at all; ioc_viewer sees only summaries.
TICKET_ROLES = ("officer", "dispatcher", "supervisor", "admin", "department_system", "citizen_app")
CITY_WIDE_ROLES = ("dispatcher", "admin")
# Roles that see the reporter's contact details (they may need to call back).
CONTACT_ROLES = ("officer", "dispatcher", "supervisor", "admin")
# Roles that work tickets (the write endpoints), and keys that read only what the citizen may see.
WORKER_ROLES = ("officer", "dispatcher", "supervisor", "admin")
CITIZEN_SIDE_ROLES = ("citizen_app",)
# Roles that give a ticket to someone else, and the roles of the staff a ticket can be given to.
ASSIGNER_ROLES = ("dispatcher", "supervisor", "admin")
ASSIGNABLE_ROLES = DEPARTMENT_STAFF_ROLES
# Roles that take a ticket of their own department for themselves.
CLAIMER_ROLES = ("officer", "supervisor")


async def department_and_units_below(session: AsyncSession, code: str) -> set[str]:
    rows = (await session.exec(select(Department.code, Department.parent_code))).all()
    children: dict[str | None, list[str]] = {}
    for child, parent in rows:
        children.setdefault(parent, []).append(child)
    found, stack = set(), [code]
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(children.get(current, []))
    return found


async def readable_condition(session: AsyncSession, subject: AuthSubject) -> ColumnElement[bool]:
    """The WHERE clause that limits reports to what this subject may see."""
    if subject.role in CITY_WIDE_ROLES:
        return true()
    if subject.role == "citizen_app":
        return col(Report.api_client_id) == subject.id
    if subject.role in ("officer", "department_system") and subject.department_code:
        return col(Report.department_code) == subject.department_code
    if subject.role == "supervisor" and subject.department_code:
        units = await department_and_units_below(session, subject.department_code)
        return or_(col(Report.department_code).in_(units), col(Report.escalated_to_department_code).in_(units))
    return false()


async def can_read(session: AsyncSession, subject: AuthSubject, report_id: UUID) -> bool:
    """Whether this subject may read the ticket of this report (its photos included)."""
    if subject.role not in TICKET_ROLES:
        return False
    condition = await readable_condition(session, subject)
    found = await session.exec(select(Report.id).where(Report.id == report_id, condition))
    return found.first() is not None


async def may_see_department_staff(session: AsyncSession, subject: AuthSubject, code: str) -> bool:
    """Who works in a department (to give it a ticket): its own staff, supervisors of the units above
    it, and the city-wide roles."""
    if subject.role in CITY_WIDE_ROLES:
        return True
    if subject.role in ("officer", "department_system"):
        return subject.department_code == code
    if subject.role == "supervisor" and subject.department_code:
        return code in await department_and_units_below(session, subject.department_code)
    return False
