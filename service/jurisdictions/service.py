"""Jurisdictions in the database, and the in-memory spatial index built from them.

A city manages its map here: import a level from a file (adding to it, or `replace` to make the file
the whole of that level), list, delete. Parents are jurisdictions too: a ward file's parent column
creates them (with a name, without a boundary until one is imported), so routing rules, ticket and
IOC filters can name a district or the city itself. Reports keep the codes they recorded.
"""

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.jurisdictions.geo import (
    DEMO_CITY_PATH,
    DEMO_JURISDICTIONS_PATH,
    JurisdictionIndex,
    JurisdictionShape,
    parse_feature_collection,
)
from service.models import Jurisdiction, RoutingRule
from service.models.types import utcnow

# Bumped by every change made through this process, so its caches of the map look again at once.
changes_in_process = 0


def _changed() -> None:
    global changes_in_process
    changes_in_process += 1


class JurisdictionError(ValueError):
    """A change to the map that would leave it inconsistent; the message says what to do instead."""


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    removed: list[str] = field(default_factory=list)
    parents_created: list[str] = field(default_factory=list)
    # Routing rules of the current catalogue naming a jurisdiction that no longer exists.
    orphaned_rules: list[str] = field(default_factory=list)


async def import_shapes(
    session: AsyncSession, shapes: list[JurisdictionShape], *, replace: bool = False, parent_level: str = "district"
) -> ImportResult:
    """Insert or update each shape by code, and create the parents they name.

    With `replace`, every other jurisdiction of the file's level goes, then any parent without a
    boundary that nothing names any more: the file becomes the whole of its level, in the caller's
    transaction."""
    levels = {shape.level for shape in shapes}
    if len(levels) > 1:
        raise JurisdictionError(f"one import is one level, not {sorted(levels)}")
    codes = {shape.code for shape in shapes}
    created = updated = 0
    now = utcnow()
    for shape in shapes:
        row = await session.get(Jurisdiction, shape.code)
        if row is None:
            row = Jurisdiction(code=shape.code, name=shape.name, level=shape.level)
            created += 1
        else:
            updated += 1
        row.name, row.level, row.parent_code = shape.name, shape.level, shape.parent_code
        row.geometry_wkt, row.imported_at = shape.geometry_wkt, now
        session.add(row)

    parents_created: list[str] = []
    parent_names = {shape.parent_code: shape.parent_name for shape in shapes if shape.parent_code}
    for parent_code, parent_name in sorted(parent_names.items()):
        if parent_code in codes:
            continue
        parent = await session.get(Jurisdiction, parent_code)
        if parent is None:
            parent = Jurisdiction(
                code=parent_code, name=parent_name or parent_code, level=parent_level, imported_at=now
            )
            parents_created.append(parent_code)
        elif parent_name and parent.geometry_wkt is None:
            # A parent without its own boundary is described by its children's file.
            parent.name, parent.imported_at = parent_name, now
        session.add(parent)
    await session.flush()

    _changed()
    removed: list[str] = []
    if replace and levels:
        level = levels.pop()
        stale = (
            await session.exec(
                select(Jurisdiction.code).where(Jurisdiction.level == level, col(Jurisdiction.code).not_in(codes))
            )
        ).all()
        removed = sorted(stale)
        if removed:
            await session.exec(delete(Jurisdiction).where(col(Jurisdiction.code).in_(removed)))
        removed += await _remove_childless_parents(session)
    return ImportResult(created, updated, removed, parents_created, await orphaned_rules(session))


def demo_shapes() -> tuple[list[JurisdictionShape], list[JurisdictionShape]]:
    """The demo city outline (level city) and its wards, directly under it as since 1 July 2025."""
    import json

    city = parse_feature_collection(
        json.loads(DEMO_CITY_PATH.read_text()), level="city", code_field="code", name_field="name"
    )
    wards = parse_feature_collection(
        json.loads(DEMO_JURISDICTIONS_PATH.read_text()),
        level="ward",
        code_field="code",
        name_field="name",
        parent_field="parent",
        parent_name_field="parent_name",
    )
    return city, wards


async def import_demo(session: AsyncSession) -> ImportResult | None:
    """The demo map, only into a database with no jurisdiction at all: never over a city's own."""
    if await count(session):
        return None
    city, wards = demo_shapes()
    await import_shapes(session, city, parent_level="city")
    return await import_shapes(session, wards, parent_level="city")


async def _remove_childless_parents(session: AsyncSession) -> list[str]:
    """Parents known only through children that are gone: nothing names them, nothing draws them."""
    removed: list[str] = []
    while True:
        named = select(Jurisdiction.parent_code).where(col(Jurisdiction.parent_code).is_not(None))
        gone = (
            await session.exec(
                select(Jurisdiction.code).where(
                    col(Jurisdiction.geometry_wkt).is_(None), col(Jurisdiction.code).not_in(named)
                )
            )
        ).all()
        if not gone:
            return sorted(removed)
        await session.exec(delete(Jurisdiction).where(col(Jurisdiction.code).in_(gone)))
        removed += gone


async def orphaned_rules(session: AsyncSession) -> list[str]:
    """Routing rules naming a jurisdiction the map does not have (they can never match)."""
    known = select(Jurisdiction.code)
    rows = (
        await session.exec(
            select(RoutingRule)
            .where(col(RoutingRule.jurisdiction_code).is_not(None), col(RoutingRule.jurisdiction_code).not_in(known))
            .order_by(col(RoutingRule.id))
        )
    ).all()
    return [f"{rule.category_code or '*'} @ {rule.jurisdiction_code} → {rule.department_code}" for rule in rows]


@dataclass(frozen=True)
class Listed:
    code: str
    name: str
    level: str
    parent_code: str | None
    has_boundary: bool
    children: int


async def list_(session: AsyncSession) -> list[Listed]:
    rows = (await session.exec(select(Jurisdiction).order_by(Jurisdiction.level, Jurisdiction.code))).all()
    children = Counter(row.parent_code for row in rows if row.parent_code)
    return [
        Listed(row.code, row.name, row.level, row.parent_code, row.geometry_wkt is not None, children[row.code])
        for row in rows
    ]


async def delete_(session: AsyncSession, code: str) -> list[str]:
    """Remove one jurisdiction; returns the routing rules left naming nothing. Parents go after their children."""
    row = await session.get(Jurisdiction, code)
    if row is None:
        raise JurisdictionError(f"no jurisdiction {code!r}")
    children = (await session.exec(select(func.count()).where(Jurisdiction.parent_code == code))).one()
    if children:
        raise JurisdictionError(f"{code} has {children} jurisdiction(s) under it: delete or re-import them first")
    await session.delete(row)
    await session.flush()
    _changed()
    await _remove_childless_parents(session)
    return await orphaned_rules(session)


async def existing_codes(session: AsyncSession) -> set[str]:
    return set((await session.exec(select(Jurisdiction.code))).all())


async def count(session: AsyncSession, *, level: str | None = None) -> int:
    statement = select(func.count()).select_from(Jurisdiction)
    if level is not None:
        statement = statement.where(Jurisdiction.level == level)
    return (await session.exec(statement)).one()


async def expand(session: AsyncSession, code: str) -> tuple[str, ...]:
    """A jurisdiction and every jurisdiction under it, at any depth: what a filter on it covers."""
    rows = (await session.exec(select(Jurisdiction.code, Jurisdiction.parent_code))).all()
    children: dict[str, list[str]] = {}
    for child, parent in rows:
        if parent:
            children.setdefault(parent, []).append(child)
    found, frontier = {code}, [code]
    while frontier:
        for child in children.get(frontier.pop(), ()):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return (code, *sorted(found - {code}))


def covered_by(code: str):
    """A SELECT of the code and every jurisdiction under it at any depth (a recursive CTE, on SQLite and
    PostgreSQL alike): what a ticket filter on a ward, a district or the city covers."""
    tree = select(Jurisdiction.code).where(Jurisdiction.code == code).cte("covered", recursive=True)
    tree = tree.union_all(select(Jurisdiction.code).where(Jurisdiction.parent_code == tree.c.code))
    return select(tree.c.code)


@dataclass(frozen=True)
class JurisdictionMap:
    """Every jurisdiction in memory: the spatial index of the lowest level and who contains whom."""

    index: JurisdictionIndex
    parents: dict[str, str | None]
    # Every boundary, whatever its level: what the service area is made of (None without any).
    area: JurisdictionIndex | None = None

    def ancestry(self, code: str) -> list[str]:
        """The code and its parents' codes, nearest first: what routing rules may name."""
        chain, seen = [], set()
        current: str | None = code
        while current and current not in seen:
            chain.append(current)
            seen.add(current)
            current = self.parents.get(current)
        return chain


def version_columns() -> tuple:
    """What changes whenever an import anywhere changes the table: a cache of the map is keyed on it."""
    return (
        select(func.count()).select_from(Jurisdiction).scalar_subquery(),
        select(func.max(Jurisdiction.imported_at)).scalar_subquery(),
    )


def _shapes(rows: list[Jurisdiction]) -> list[JurisdictionShape]:
    return [
        JurisdictionShape(
            code=row.code, name=row.name, level=row.level, parent_code=row.parent_code, geometry_wkt=row.geometry_wkt
        )
        for row in rows
        if row.geometry_wkt
    ]


def placed_shapes(rows: list[Jurisdiction], drawn: list[JurisdictionShape] | None = None) -> list[JurisdictionShape]:
    """Reports are placed in one level: the boundaries nothing lies under, of the level most of them have.

    So a city outline left beside a city's own wards (the demo's, say) bounds the service area but
    never takes a report that falls in a gap between wards."""
    parent_codes = {row.parent_code for row in rows if row.parent_code}
    childless = [shape for shape in (_shapes(rows) if drawn is None else drawn) if shape.code not in parent_codes]
    levels = Counter(shape.level for shape in childless)
    # Most boundaries first, then the name, so a tie is decided the same way every time.
    lowest_level = min(levels, key=lambda level: (-levels[level], level)) if levels else None
    return [shape for shape in childless if shape.level == lowest_level]


def build_map(rows: list[Jurisdiction]) -> JurisdictionMap:
    drawn = _shapes(rows)
    return JurisdictionMap(
        JurisdictionIndex(placed_shapes(rows, drawn)),
        {row.code: row.parent_code for row in rows},
        JurisdictionIndex(drawn) if drawn else None,
    )


async def load_map(session: AsyncSession) -> JurisdictionMap:
    return build_map(list((await session.exec(select(Jurisdiction))).all()))
