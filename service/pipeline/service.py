"""The processing of reports: photos → classify → priority → duplicates → jurisdiction → department → SLA.

A job processes a batch of waiting reports in one transaction, with set-based work where it costs:
one claim, one query for the photos, one classifier call, one duplicate search, and the events and
webhook outbox rows written in bulk by one flush; each report still gets each event saying what
decided each step, through the lifecycle's one door. A report that is no longer `received` is left
alone, so running a job twice changes nothing; a report another transaction is processing is skipped.
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import h3
from sqlalchemy import select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from service.catalogue.snapshot import CatalogueCache, CatalogueSnapshot
from service.classify.model import Classifier, Prediction
from service.classify.priority import assess_priority
from service.jurisdictions.geo import Match
from service.lifecycle import changes
from service.lifecycle.events import EventCode
from service.lifecycle.states import Status, Via
from service.models import Report, ReportRow
from service.models.types import utcnow
from service.photos.storage import PhotoStorage
from service.pipeline import duplicates, routing
from service.pipeline.photos import process_photos_of
from service.reports.service import H3_RESOLUTION
from service.settings import Settings
from service.sla import service as sla
from service.sla.rules import SlaPolicy


@dataclass
class PipelineResources:
    """Built once per worker process."""

    settings: Settings
    classifier: Classifier
    catalogue: CatalogueCache
    storage: PhotoStorage


async def claim(session: AsyncSession, report_ids: list[UUID], *, top_up_to: int = 0) -> list[ReportRow]:
    """These reports if still waiting, topped up to `top_up_to` with the oldest others waiting, locked
    for this transaction, oldest first, read as plain rows of the columns the pipeline uses. Rows
    another transaction holds are skipped (SKIP LOCKED; SQLite has one writer). Reports that already
    failed are taken only by their own jobs: a report that keeps failing cannot make other batches
    fail with it. When none of these reports is left (another batch took them), nothing else is taken
    either: every waiting report has a job of its own coming."""
    # FOR NO KEY UPDATE: a row inserted elsewhere that refers to the report (an event, a webhook lease)
    # takes a key-share lock on it, which FOR UPDATE would count as held and skip.
    statement = (
        select(*ReportRow.columns())
        .where(col(Report.status) == Status.RECEIVED)
        .with_for_update(skip_locked=True, key_share=True)
    )
    claimed = (
        [ReportRow(row) for row in (await session.execute(statement.where(col(Report.id).in_(report_ids)))).mappings()]
        if report_ids
        else []
    )
    if report_ids and not claimed:
        return []
    if len(claimed) < top_up_to and not any(report.processing_failures for report in claimed):
        others = statement.where(col(Report.processing_failures) == 0).order_by(col(Report.created_at))
        if report_ids:
            others = others.where(col(Report.id).not_in(report_ids))
        rows = (await session.execute(others.limit(top_up_to - len(claimed)))).mappings()
        claimed += [ReportRow(row) for row in rows]
    return sorted(claimed, key=lambda report: (report.created_at, str(report.id)))


async def still_waiting(session: AsyncSession, report_ids: list[UUID]) -> list[UUID]:
    """Which of these reports are `received` as last committed, whoever holds them now."""
    if not report_ids:
        return []
    statement = select(col(Report.id)).where(col(Report.id).in_(report_ids), col(Report.status) == Status.RECEIVED)
    return list((await session.execute(statement)).scalars())


async def process(session: AsyncSession, report_id: UUID, resources: PipelineResources) -> str:
    """One report alone (the batch's fallback, and tests): its outcome."""
    outcomes = await process_batch(session, [report_id], resources)
    if report_id in outcomes:
        return outcomes[report_id]
    return "missing" if await session.get(Report, report_id) is None else "already-processed"


async def process_batch(
    session: AsyncSession, report_ids: list[UUID], resources: PipelineResources, *, top_up_to: int = 0
) -> dict[UUID, str]:
    """Claim these reports and others waiting up to `top_up_to` (see `claim`), process them; each claimed
    report's outcome. The caller commits, or rolls back the whole batch (then tries its reports alone)."""
    return await process_claimed(session, await claim(session, report_ids, top_up_to=top_up_to), resources)


async def process_claimed(
    session: AsyncSession, reports: list[ReportRow], resources: PipelineResources
) -> dict[UUID, str]:
    """Process reports this transaction claimed; each one's outcome."""
    if not reports:
        return {}
    settings = resources.settings
    # Read before anything changes, so no query until the duplicate search makes the session flush.
    catalogue = await resources.catalogue.get(session)

    batch = changes.Batch(session)
    photo_summaries = await process_photos_of(session, resources.storage, reports)
    for report in reports:
        if summaries := photo_summaries.get(report.id):
            batch.note(report, EventCode.PHOTOS_PROCESSED, data={"photos": summaries}, touch=False)
        if report.lat is not None and report.lon is not None and report.h3_cell is None:
            report.h3_cell = h3.latlng_to_cell(report.lat, report.lon, H3_RESOLUTION)

    predictions = _predict(reports, resources)
    triage: dict[UUID, bool] = {}
    priorities: dict[UUID, str] = {}
    for report in reports:
        triage[report.id] = _classify(batch, report, predictions.get(report.id), resources)
        default = catalogue.default_priorities.get(report.service_code or "", "normal")
        priorities[report.id] = _prioritise(batch, report, default)

    searching = {report.id: report for report in reports if not triage[report.id] and duplicates.searchable(report)}
    finder = await duplicates.load_finder(
        session,
        list(searching.values()),
        radius_m=settings.duplicate_radius_m,
        window_days=settings.duplicate_window_days,
    )
    rules = _Rules(catalogue, reports, settings.jurisdiction_tolerance_m)
    outcomes: dict[UUID, str] = {}
    for report in reports:
        needs_triage, priority = triage[report.id], priorities[report.id]
        match = finder.find(report) if report.id in searching else None
        if match:
            # Placed in its ward all the same: the IOC and the ticket filters count duplicates by ward,
            # and a duplicate reopened on its own is routed from there.
            _locate(batch, report, rules)
            outcomes[report.id] = await _mark_duplicate(batch, report, match, priority)
            continue
        outcomes[report.id] = await _place(batch, report, rules, needs_triage, priority, settings)
        if report.id in searching:
            finder.add(_as_original(report))
    await batch.write()
    return outcomes


def _predict(reports: list[ReportRow], resources: PipelineResources) -> dict[UUID, Prediction]:
    """One classifier call for every report without a category of its own."""
    unsure = [report for report in reports if not _has_own_category(report)]
    texts = [" ".join(part for part in (report.title, report.description) if part) for report in unsure]
    predictions = resources.classifier.predict_many(texts, resources.settings.classifier_threshold)
    return {report.id: prediction for report, prediction in zip(unsure, predictions, strict=True)}


def _has_own_category(report: ReportRow) -> bool:
    return bool(report.requested_service_code) and report.requested_service_code != "other"


def _as_original(report: ReportRow) -> duplicates.Original:
    assert report.service_code and report.h3_cell and report.lat is not None and report.lon is not None
    return duplicates.Original(
        report.id,
        report.tracking_code,
        report.department_code,
        report.service_code,
        report.h3_cell,
        report.lat,
        report.lon,
        report.created_at,
    )


class _Rules:
    """The catalogue's routing and SLA decisions for one batch, each worked out once: the reports of a
    batch share a few categories, wards and priorities."""

    def __init__(self, catalogue: CatalogueSnapshot, reports: list[ReportRow], tolerance_m: float):
        self.catalogue = catalogue
        # Where each report with a point is: one query of the boundaries' index for the batch.
        placed = [report for report in reports if report.lat is not None and report.lon is not None]
        positions = [(report.lon, report.lat) for report in placed]
        matches = catalogue.jurisdictions.index.locate_many(positions, tolerance_m=tolerance_m)  # type: ignore[arg-type]
        self.located: dict[UUID, Match | None] = {
            report.id: match for report, match in zip(placed, matches, strict=True)
        }
        self._routes: dict[tuple[str | None, tuple[str, ...]], routing.RoutingDecision | None] = {}
        self._policies: dict[tuple[str | None, str], tuple[SlaPolicy, dict]] = {}

    def route(self, service_code: str | None, jurisdictions: list[str]) -> routing.RoutingDecision | None:
        key = (service_code, tuple(jurisdictions))
        if key not in self._routes:
            self._routes[key] = routing.decide(self.catalogue.routing_rules, service_code, jurisdictions)
        return self._routes[key]

    def policy(self, service_code: str | None, priority: str) -> tuple[SlaPolicy, dict]:
        key = (service_code, priority)
        if key not in self._policies:
            self._policies[key] = sla.choose_policy(self.catalogue.sla_policies, service_code, priority)
        return self._policies[key]


async def _place(
    batch: changes.Batch,
    report: ReportRow,
    rules: _Rules,
    needs_triage: bool,
    priority: str,
    settings: Settings,
) -> str:
    """Not a duplicate: jurisdiction, department, SLA, and the move out of `received`."""
    jurisdictions = _locate(batch, report, rules)
    # Triage goes to the dispatch unit (no category, no place).
    decision = rules.route(None, []) if needs_triage else rules.route(report.service_code, jurisdictions)
    if decision:
        batch.note(
            report,
            EventCode.ROUTED,
            touch=False,
            data={
                "department": decision.department_code,
                "rule": decision.rule,
                "catalogue_version": decision.catalogue_version,
            },
        )

    policy, policy_info = rules.policy(report.service_code, priority)
    sla.start_clock(report, policy, sla.calendar_from(settings), report.created_at, settings.sla_at_risk_ratio)
    assert report.acknowledge_due_at is not None and report.due_at is not None  # set by start_clock
    batch.note(
        report,
        EventCode.SLA_SET,
        touch=False,
        data={
            **policy_info,
            "clock": policy.clock,
            "acknowledge_due_at": report.acknowledge_due_at.isoformat(),
            "due_at": report.due_at.isoformat(),
        },
    )

    report.processed_at = utcnow()
    await batch.change(
        report,
        via=Via.PIPELINE,
        status=Status.NEEDS_TRIAGE if needs_triage else Status.ASSIGNED,
        department_code=decision.department_code if decision else None,
        priority=priority,
        data={"due_at": report.due_at.isoformat() if report.due_at else None},
    )
    return report.status


def _classify(
    batch: changes.Batch, report: ReportRow, prediction: Prediction | None, resources: PipelineResources
) -> bool:
    """Keep the citizen's own category unless it is missing or `other`; returns whether a human must triage."""
    if prediction is None:
        report.service_code, report.category_source = report.requested_service_code, "citizen"
        batch.note(
            report,
            EventCode.CLASSIFIED,
            data={"service_code": report.service_code, "source": "citizen"},
            touch=False,
        )
        return False
    report.classification_confidence = round(prediction.confidence, 4)
    report.category_source = "classifier"
    data: dict[str, Any] = {
        "predicted": prediction.service_code,
        "confidence": round(prediction.confidence, 4),
        "threshold": resources.settings.classifier_threshold,
        "model_version": resources.classifier.version,
        "source": "classifier",
    }
    if prediction.triage:
        report.service_code = report.requested_service_code  # `other` or nothing: a dispatcher decides
        batch.note(report, EventCode.CLASSIFIED, data={**data, "triage": True}, touch=False)
        return True
    report.service_code = prediction.service_code
    batch.note(report, EventCode.CLASSIFIED, data={**data, "service_code": prediction.service_code}, touch=False)
    return False


def _prioritise(batch: changes.Batch, report: ReportRow, category_default: str) -> str:
    """The priority the report will get (set with its status by the lifecycle), and why."""
    text = " ".join(part for part in (report.title, report.description) if part)
    priority, signal = assess_priority(text, category_default)
    batch.note(
        report,
        EventCode.PRIORITISED,
        touch=False,
        data={"priority": priority, "signal": signal, "category_default": category_default},
    )
    return priority


async def _mark_duplicate(
    batch: changes.Batch, report: ReportRow, match: duplicates.DuplicateMatch, priority: str
) -> str:
    original = match.original
    report.duplicate_of_id = original.id
    report.processed_at = utcnow()
    batch.add_supporter(original.id, report, actor=changes.SYSTEM, data={"distance_m": match.distance_m})
    await batch.change(
        report,
        via=Via.PIPELINE,
        status=Status.DUPLICATE,
        department_code=original.department_code,
        priority=priority,
        data={"original": original.tracking_code, "distance_m": match.distance_m},
    )
    return "duplicate"


def _locate(batch: changes.Batch, report: ReportRow, rules: _Rules) -> list[str]:
    """The report's jurisdiction and its parents (nearest first); empty without a point or a match."""
    if report.lat is None or report.lon is None:
        batch.note(report, EventCode.LOCATED, data={"jurisdiction": None, "reason": "no coordinates"}, touch=False)
        return []
    match = rules.located[report.id]
    if match is None:
        batch.note(
            report,
            EventCode.LOCATED,
            data={"jurisdiction": None, "reason": "outside every boundary"},
            touch=False,
        )
        return []
    report.jurisdiction_code = match.code
    batch.note(
        report,
        EventCode.LOCATED,
        touch=False,
        data={"jurisdiction": match.code, "method": match.method, "distance_m": match.distance_m},
    )
    return rules.catalogue.jurisdictions.ancestry(match.code)


async def give_up(session: AsyncSession, report_id: UUID, error: str, resources: PipelineResources) -> str:
    """Processing failed (not an outage): count it; at the limit a dispatcher takes the report over, so
    a report that always fails is neither retried forever nor left in the sweep's way."""
    report = await session.get(Report, report_id, with_for_update=True)
    if report is None or report.status != Status.RECEIVED:
        return "already-processed"
    report.processing_failures += 1
    session.add(report)
    if report.processing_failures < resources.settings.processing_max_failures:
        return "will-retry"
    catalogue = await resources.catalogue.get(session)
    dispatch = routing.decide(catalogue.routing_rules, None, [])
    report.processed_at = utcnow()
    await changes.change(
        session,
        report,
        via=Via.POISON,
        code=EventCode.PROCESSING_FAILED,
        status=Status.NEEDS_TRIAGE,
        department_code=dispatch.department_code if dispatch else None,
        data={"attempts": report.processing_failures, "error": error},
    )
    return "needs-triage"
