"""The catalogue as the worker's pipeline reads it for every report, kept in memory between reports.

Category priorities, routing rules, SLA policies and jurisdictions change only when a catalogue is
loaded or boundaries are imported, yet the pipeline used to read them in four queries per report.
`CatalogueCache.get` asks one question instead (which catalogue version is current, and how many
jurisdictions were imported when) and reloads everything only when the answer changes, so a reload
still takes effect on the very next report, in every worker, with no restart.
"""

from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.jurisdictions.service import JurisdictionMap, load_map, version_columns
from service.models import CatalogueVersion, RoutingRule, ServiceCategory, SlaPolicyRow


@dataclass(frozen=True)
class CatalogueSnapshot:
    version: tuple
    default_priorities: dict[str, str]  # category code -> its default priority
    routing_rules: list[RoutingRule]
    sla_policies: list[SlaPolicyRow]
    jurisdictions: JurisdictionMap


class CatalogueCache:
    """One snapshot per process; concurrent jobs share it and only read it."""

    def __init__(self) -> None:
        self._snapshot: CatalogueSnapshot | None = None

    async def get(self, session: AsyncSession) -> CatalogueSnapshot:
        version = await _current_version(session)
        if self._snapshot is None or self._snapshot.version != version:
            self._snapshot = await _load(session, version)
        return self._snapshot


async def _current_version(session: AsyncSession) -> tuple:
    catalogue = (
        select(CatalogueVersion.version).where(col(CatalogueVersion.is_current).is_(True)).limit(1).scalar_subquery()
    )
    return tuple((await session.exec(select(catalogue, *version_columns()))).one())


async def _load(session: AsyncSession, version: tuple) -> CatalogueSnapshot:
    categories = (await session.exec(select(ServiceCategory.code, ServiceCategory.default_priority))).all()
    rules = (await session.exec(select(RoutingRule).order_by(col(RoutingRule.id)))).all()
    policies = (await session.exec(select(SlaPolicyRow).order_by(col(SlaPolicyRow.id)))).all()
    return CatalogueSnapshot(
        version=version,
        default_priorities=dict(categories),
        # Copies outside any session: a job's rollback expires the rows it loaded, and the next job may
        # read them from another task.
        routing_rules=[RoutingRule.model_validate(rule.model_dump()) for rule in rules],
        sla_policies=[SlaPolicyRow.model_validate(policy.model_dump()) for policy in policies],
        jurisdictions=await load_map(session),
    )
