"""The processing of one report: photos → classify → priority → duplicates → jurisdiction → department → SLA.

Everything happens in the job's one transaction, and each step writes an event saying what decided
it. A report that is no longer `received` is left alone, so running the job twice changes nothing.
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import h3
from sqlmodel.ext.asyncio.session import AsyncSession

from service.catalogue.snapshot import CatalogueCache, CatalogueSnapshot
from service.classify.model import Classifier
from service.classify.priority import assess_priority
from service.lifecycle import changes
from service.lifecycle.changes import note
from service.lifecycle.events import EventCode
from service.lifecycle.states import Status, Via
from service.models import Report
from service.models.types import utcnow
from service.photos.storage import PhotoStorage
from service.pipeline import duplicates, routing
from service.pipeline.photos import process_photos
from service.reports.service import H3_RESOLUTION
from service.settings import Settings
from service.sla import service as sla


@dataclass
class PipelineResources:
    """Built once per worker process."""

    settings: Settings
    classifier: Classifier
    catalogue: CatalogueCache
    storage: PhotoStorage


async def process(session: AsyncSession, report_id: UUID, resources: PipelineResources) -> str:
    report = await session.get(Report, report_id, with_for_update=True)
    if report is None:
        return "missing"
    if report.status != Status.RECEIVED:
        return "already-processed"
    settings = resources.settings
    # Read before anything changes, so no query until the duplicate search makes the session flush.
    catalogue = await resources.catalogue.get(session)

    photo_summaries = await process_photos(session, resources.storage, report)
    if photo_summaries:
        await note(session, report, EventCode.PHOTOS_PROCESSED, data={"photos": photo_summaries}, touch=False)
    if report.lat is not None and report.h3_cell is None:
        report.h3_cell = h3.latlng_to_cell(report.lat, report.lon, H3_RESOLUTION)

    needs_triage = await _classify(session, report, resources)
    priority = await _prioritise(session, report, catalogue.default_priorities.get(report.service_code or "", "normal"))

    if not needs_triage:
        match = await duplicates.find_original(
            session, report, radius_m=settings.duplicate_radius_m, window_days=settings.duplicate_window_days
        )
        if match:
            return await _mark_duplicate(session, report, match, priority)

    jurisdictions = await _locate(session, report, catalogue, settings.jurisdiction_tolerance_m)
    decision = (
        routing.decide(catalogue.routing_rules, None, [])  # the dispatch unit
        if needs_triage
        else routing.decide(catalogue.routing_rules, report.service_code, jurisdictions)
    )
    if decision:
        await note(
            session,
            report,
            EventCode.ROUTED,
            touch=False,
            data={
                "department": decision.department_code,
                "rule": decision.rule,
                "catalogue_version": decision.catalogue_version,
            },
        )

    policy, policy_info = sla.choose_policy(catalogue.sla_policies, report.service_code, priority)
    sla.start_clock(report, policy, sla.calendar_from(settings), report.created_at, settings.sla_at_risk_ratio)
    assert report.acknowledge_due_at is not None and report.due_at is not None  # set by start_clock
    await note(
        session,
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
    await changes.change(
        session,
        report,
        via=Via.PIPELINE,
        status=Status.NEEDS_TRIAGE if needs_triage else Status.ASSIGNED,
        department_code=decision.department_code if decision else None,
        priority=priority,
        data={"due_at": report.due_at.isoformat() if report.due_at else None},
    )
    await session.flush()
    return report.status


async def _classify(session: AsyncSession, report: Report, resources: PipelineResources) -> bool:
    """Keep the citizen's own category unless it is missing or `other`; returns whether a human must triage."""
    if report.requested_service_code and report.requested_service_code != "other":
        report.service_code, report.category_source = report.requested_service_code, "citizen"
        await note(
            session,
            report,
            EventCode.CLASSIFIED,
            data={"service_code": report.service_code, "source": "citizen"},
            touch=False,
        )
        return False
    text = " ".join(part for part in (report.title, report.description) if part)
    prediction = resources.classifier.predict(text, resources.settings.classifier_threshold)
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
        await note(session, report, EventCode.CLASSIFIED, data={**data, "triage": True}, touch=False)
        return True
    report.service_code = prediction.service_code
    await note(
        session, report, EventCode.CLASSIFIED, data={**data, "service_code": prediction.service_code}, touch=False
    )
    return False


async def _prioritise(session: AsyncSession, report: Report, category_default: str) -> str:
    """The priority the report will get (set with its status by the lifecycle), and why."""
    text = " ".join(part for part in (report.title, report.description) if part)
    priority, signal = assess_priority(text, category_default)
    await note(
        session,
        report,
        EventCode.PRIORITISED,
        touch=False,
        data={"priority": priority, "signal": signal, "category_default": category_default},
    )
    return priority


async def _mark_duplicate(
    session: AsyncSession, report: Report, match: duplicates.DuplicateMatch, priority: str
) -> str:
    original = match.original
    report.duplicate_of_id = original.id
    report.processed_at = utcnow()
    await changes.add_supporter(session, original, report, actor=changes.SYSTEM, data={"distance_m": match.distance_m})
    await changes.change(
        session,
        report,
        via=Via.PIPELINE,
        status=Status.DUPLICATE,
        department_code=original.department_code,
        priority=priority,
        data={"original": original.tracking_code, "distance_m": match.distance_m},
    )
    await session.flush()
    return "duplicate"


async def _locate(session: AsyncSession, report: Report, catalogue: CatalogueSnapshot, tolerance_m: float) -> list[str]:
    """The report's jurisdiction and its parents (nearest first); empty without a point or a match."""
    if report.lat is None or report.lon is None:
        await note(
            session, report, EventCode.LOCATED, data={"jurisdiction": None, "reason": "no coordinates"}, touch=False
        )
        return []
    match = catalogue.jurisdictions.index.locate(report.lon, report.lat, tolerance_m=tolerance_m)
    if match is None:
        await note(
            session,
            report,
            EventCode.LOCATED,
            data={"jurisdiction": None, "reason": "outside every boundary"},
            touch=False,
        )
        return []
    report.jurisdiction_code = match.code
    await note(
        session,
        report,
        EventCode.LOCATED,
        touch=False,
        data={"jurisdiction": match.code, "method": match.method, "distance_m": match.distance_m},
    )
    return catalogue.jurisdictions.ancestry(match.code)


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
