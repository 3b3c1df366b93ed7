"""Jurisdictions in the database, and the in-memory spatial index built from them."""

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.jurisdictions.geo import JurisdictionIndex, JurisdictionShape
from service.models import Jurisdiction
from service.models.types import utcnow


async def import_shapes(session: AsyncSession, shapes: list[JurisdictionShape]) -> tuple[int, int]:
    """Insert or update each shape by code. Returns (created, updated)."""
    created = updated = 0
    now = utcnow()
    for shape in shapes:
        row = await session.get(Jurisdiction, shape.code)
        if row is None:
            row = Jurisdiction(code=shape.code, name=shape.name, level=shape.level, geometry_wkt=shape.geometry_wkt)
            created += 1
        else:
            updated += 1
        row.name, row.level, row.parent_code = shape.name, shape.level, shape.parent_code
        row.geometry_wkt, row.imported_at = shape.geometry_wkt, now
        session.add(row)
    await session.flush()
    return created, updated


@dataclass(frozen=True)
class JurisdictionMap:
    """Every jurisdiction in memory: the spatial index and who contains whom."""

    index: JurisdictionIndex
    parents: dict[str, str | None]

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


async def load_map(session: AsyncSession) -> JurisdictionMap:
    rows = (await session.exec(select(Jurisdiction))).all()
    shapes = [
        JurisdictionShape(
            code=row.code, name=row.name, level=row.level, parent_code=row.parent_code, geometry_wkt=row.geometry_wkt
        )
        for row in rows
    ]
    return JurisdictionMap(JurisdictionIndex(shapes), {row.code: row.parent_code for row in rows})
