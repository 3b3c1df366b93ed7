"""Loading the catalogue file into the database, and reading the current catalogue back."""

import hashlib
from pathlib import Path

import yaml
from pydantic import ValidationError
from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from service.catalogue.checks import CatalogueError, Problem, reference_problems, structure_problems, with_lines
from service.catalogue.schemas import CatalogueFile
from service.errors import Unprocessable
from service.jurisdictions.service import existing_codes
from service.models import (
    CatalogueVersion,
    Department,
    Jurisdiction,
    Report,
    RoutingRule,
    ServiceCategory,
    SlaPolicyRow,
)

HOURS_PER_WORKING_DAY = 8


def read_file(path: Path) -> tuple[CatalogueFile, str]:
    """The file's catalogue and checksum; CatalogueError (each problem with its line) when its shape is wrong."""
    raw = Path(path).read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CatalogueError(
            [Problem((), f"not YAML: {getattr(exc, 'problem', exc)}", mark.line + 1 if mark else None)]
        ) from exc
    try:
        return CatalogueFile.model_validate(data), hashlib.sha256(raw).hexdigest()
    except ValidationError as exc:
        raise CatalogueError(with_lines(structure_problems(exc), raw)) from exc


async def check(session: AsyncSession, catalogue: CatalogueFile) -> list[Problem]:
    """What stops this catalogue from loading against the map in the database (nothing is written)."""
    return reference_problems(catalogue, await existing_codes(session))


async def load(session: AsyncSession, *, catalogue: CatalogueFile, checksum: str, source: str) -> tuple[str, bool]:
    """Write the catalogue as the current version. Returns (version, changed); the same file twice is a no-op.

    A catalogue naming an unknown department, category or jurisdiction raises CatalogueError."""
    if problems := await check(session, catalogue):
        raise CatalogueError(problems)
    version = f"{catalogue.version}+{checksum[:8]}"
    if (existing := await session.get(CatalogueVersion, version)) is not None and existing.is_current:
        return version, False

    # Departments first without parents, so a parent may be listed after its child.
    for entry in catalogue.departments:
        department = await session.get(Department, entry.code) or Department(code=entry.code, name_vi="", name_en="")
        department.name_vi, department.name_en = entry.name_vi, entry.name_en
        department.is_dispatch, department.active, department.parent_code = entry.dispatch, True, None
        session.add(department)
    await session.flush()
    for entry in catalogue.departments:
        (await session.get_one(Department, entry.code)).parent_code = entry.parent
    listed = {entry.code for entry in catalogue.departments}
    await session.exec(update(Department).where(col(Department.code).not_in(listed)).values(active=False))

    for order, category_entry in enumerate(catalogue.categories):
        category = await session.get(ServiceCategory, category_entry.code) or ServiceCategory(
            code=category_entry.code, name_vi="", name_en=""
        )
        for field in ("name_vi", "name_en", "description_vi", "description_en", "default_priority"):
            setattr(category, field, getattr(category_entry, field))
        category.sort_order, category.active = order, True
        category.attributes = [attribute.model_dump(mode="json") for attribute in category_entry.attributes] or None
        session.add(category)
    listed = {entry.code for entry in catalogue.categories}
    await session.exec(update(ServiceCategory).where(col(ServiceCategory.code).not_in(listed)).values(active=False))

    await session.exec(delete(RoutingRule))
    for rule in catalogue.routing_rules:
        session.add(
            RoutingRule(
                category_code=rule.category,
                jurisdiction_code=rule.jurisdiction,
                department_code=rule.department,
                catalogue_version=version,
            )
        )
    await session.exec(delete(SlaPolicyRow))
    for policy in catalogue.sla_policies:
        resolve_hours = policy.resolve_hours or (policy.resolve_days or 0) * HOURS_PER_WORKING_DAY
        if policy.clock == "clock" and policy.resolve_days:
            resolve_hours = policy.resolve_days * 24
        session.add(
            SlaPolicyRow(
                category_code=policy.category,
                priority=policy.priority,
                acknowledge_hours=policy.acknowledge_hours,
                resolve_hours=resolve_hours,
                clock=policy.clock,
                restart_on_transfer=policy.restart_on_transfer,
                catalogue_version=version,
            )
        )
    await session.exec(update(CatalogueVersion).values(is_current=False))
    if existing is None:
        session.add(CatalogueVersion(version=version, checksum=checksum, source=source, is_current=True))
    else:
        existing.is_current = True
        session.add(existing)
    await session.flush()
    return version, True


async def current_source(session: AsyncSession) -> str | None:
    return (
        await session.exec(select(CatalogueVersion.source).where(col(CatalogueVersion.is_current).is_(True)))
    ).first()


async def current_version(session: AsyncSession) -> str | None:
    return (
        await session.exec(select(CatalogueVersion.version).where(col(CatalogueVersion.is_current).is_(True)))
    ).first()


async def list_categories(session: AsyncSession) -> list[ServiceCategory]:
    return list(
        (
            await session.exec(
                select(ServiceCategory)
                .where(col(ServiceCategory.active).is_(True))
                .order_by(col(ServiceCategory.sort_order))
            )
        ).all()
    )


async def check_filter_codes(
    session: AsyncSession, *, department: str | None, category: str | None, jurisdiction: str | None
) -> None:
    """A filter's code nobody knows is a typo to point out (422), not a filter that quietly matches
    nothing. A jurisdiction no longer on the map still counts while reports name it."""
    if department and await session.get(Department, department) is None:
        raise Unprocessable("unknown_department", "department")
    if category and await session.get(ServiceCategory, category) is None:
        raise Unprocessable("unknown_category", "category")
    if jurisdiction and await session.get(Jurisdiction, jurisdiction) is None:
        recorded = select(Report.id).where(Report.jurisdiction_code == jurisdiction).limit(1)
        if (await session.exec(recorded)).first() is None:
            raise Unprocessable("unknown_jurisdiction", "jurisdiction")
