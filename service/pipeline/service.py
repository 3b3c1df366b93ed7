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
from service.models import Report
from service.models.types import utcnow
from service.photos.storage import PhotoStorage
from service.pipeline import duplicates, routing
from service.pipeline.photos import process_photos
from service.reports.service import H3_RESOLUTION, record_event
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
    if report.status != "received":
        return "already-processed"
    settings = resources.settings
    # Read before anything changes, so no query until the duplicate search makes the session flush.
    catalogue = await resources.catalogue.get(session)

    photo_summaries = await process_photos(session, resources.storage, report)
    if photo_summaries:
        record_event(session, report, "photos_processed", public=False, data={"photos": photo_summaries})
    if report.lat is not None and report.h3_cell is None:
        report.h3_cell = h3.latlng_to_cell(report.lat, report.lon, H3_RESOLUTION)

    needs_triage = _classify(session, report, resources)
    _prioritise(session, report, catalogue.default_priorities.get(report.service_code, "normal"))

    if not needs_triage:
        match = await duplicates.find_original(
            session, report, radius_m=settings.duplicate_radius_m, window_days=settings.duplicate_window_days
        )
        if match:
            return await _mark_duplicate(session, report, match)

    jurisdictions = _locate(session, report, catalogue, settings.jurisdiction_tolerance_m)
    decision = (
        routing.decide(catalogue.routing_rules, None, [])  # the dispatch unit
        if needs_triage
        else routing.decide(catalogue.routing_rules, report.service_code, jurisdictions)
    )
    if decision:
        report.department_code = decision.department_code
        record_event(
            session,
            report,
            "routed",
            message=None,
            public=False,
            data={"department": decision.department_code, "rule": decision.rule, "catalogue_version": decision.catalogue_version},
        )

    policy, policy_info = sla.choose_policy(catalogue.sla_policies, report.service_code, report.priority)
    sla.start_clock(report, policy, sla.calendar_from(settings), report.created_at, settings.sla_at_risk_ratio)
    record_event(
        session,
        report,
        "sla_set",
        public=False,
        data={
            **policy_info,
            "clock": policy.clock,
            "acknowledge_due_at": report.acknowledge_due_at.isoformat(),
            "due_at": report.due_at.isoformat(),
        },
    )

    report.status = "needs_triage" if needs_triage else "assigned"
    report.processed_at = report.updated_at = utcnow()
    record_event(
        session,
        report,
        report.status,
        message="Đang chờ phân loại / Waiting for a dispatcher" if needs_triage else "Đã chuyển đơn vị xử lý / Assigned",
        data={"department": report.department_code, "due_at": report.due_at.isoformat()},
    )
    session.add(report)
    await session.flush()
    return report.status


def _classify(session: AsyncSession, report: Report, resources: PipelineResources) -> bool:
    """Keep the citizen's own category unless it is missing or `other`; returns whether a human must triage."""
    if report.requested_service_code and report.requested_service_code != "other":
        report.service_code, report.category_source = report.requested_service_code, "citizen"
        record_event(session, report, "classified", public=False, data={"service_code": report.service_code, "source": "citizen"})
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
        record_event(session, report, "classified", public=False, data={**data, "triage": True})
        return True
    report.service_code = prediction.service_code
    record_event(session, report, "classified", public=False, data={**data, "service_code": prediction.service_code})
    return False


def _prioritise(session: AsyncSession, report: Report, category_default: str) -> None:
    text = " ".join(part for part in (report.title, report.description) if part)
    report.priority, signal = assess_priority(text, category_default)
    record_event(
        session, report, "prioritised", public=False,
        data={"priority": report.priority, "signal": signal, "category_default": category_default},
    )


async def _mark_duplicate(session: AsyncSession, report: Report, match: duplicates.DuplicateMatch) -> str:
    original = match.original
    report.duplicate_of_id = original.id
    report.status = "duplicate"
    report.department_code = original.department_code
    report.processed_at = report.updated_at = utcnow()
    await duplicates.add_supporter(session, original)
    record_event(
        session,
        report,
        "duplicate",
        message=f"Trùng với phản ánh {original.tracking_code} / Same as report {original.tracking_code}",
        data={"original": original.tracking_code, "distance_m": match.distance_m},
    )
    record_event(
        session, original, "supporter_added", public=False,
        data={"duplicate": report.tracking_code, "distance_m": match.distance_m},
    )
    session.add(report)
    await session.flush()
    return "duplicate"


def _locate(session: AsyncSession, report: Report, catalogue: CatalogueSnapshot, tolerance_m: float) -> list[str]:
    """The report's jurisdiction and its parents (nearest first); empty without a point or a match."""
    if report.lat is None:
        record_event(session, report, "located", public=False, data={"jurisdiction": None, "reason": "no coordinates"})
        return []
    match = catalogue.jurisdictions.index.locate(report.lon, report.lat, tolerance_m=tolerance_m)
    if match is None:
        record_event(session, report, "located", public=False, data={"jurisdiction": None, "reason": "outside every boundary"})
        return []
    report.jurisdiction_code = match.code
    record_event(
        session, report, "located", public=False,
        data={"jurisdiction": match.code, "method": match.method, "distance_m": match.distance_m},
    )
    return catalogue.jurisdictions.ancestry(match.code)
