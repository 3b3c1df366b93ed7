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


@dataclass
class _Cached:
    stamp: tuple
    index: JurisdictionIndex
    parents: dict[str, str | None]


class JurisdictionCache:
    """One index per process, rebuilt only when the table changed (an import anywhere bumps the stamp)."""

    def __init__(self) -> None:
        self._cached: _Cached | None = None

    async def get(self, session: AsyncSession) -> _Cached:
        stamp = tuple((await session.exec(select(func.count(), func.max(Jurisdiction.imported_at)))).one())
        if self._cached is None or self._cached.stamp != stamp:
            rows = (await session.exec(select(Jurisdiction))).all()
            shapes = [
                JurisdictionShape(
                    code=row.code, name=row.name, level=row.level, parent_code=row.parent_code,
                    geometry_wkt=row.geometry_wkt,
                )
                for row in rows
            ]
            self._cached = _Cached(stamp, JurisdictionIndex(shapes), {row.code: row.parent_code for row in rows})
        return self._cached

    async def ancestry(self, session: AsyncSession, code: str) -> list[str]:
        """The code and its parents' codes, nearest first: what routing rules may name."""
        cached = await self.get(session)
        chain, seen = [], set()
        current: str | None = code
        while current and current not in seen:
            chain.append(current)
            seen.add(current)
            current = cached.parents.get(current)
        return chain
