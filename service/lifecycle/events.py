"""What can happen to a report: the timeline's event codes, the webhook event types, and the words
a citizen or an officer reads for each, in Vietnamese and English. Pure data and one pure function.
"""

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from service.lifecycle.states import Status


class EventCode(StrEnum):
    """A timeline entry's stable `code` (stored as report_events.type)."""

    RECEIVED = "received"
    PHOTOS_PROCESSED = "photos_processed"
    CLASSIFIED = "classified"
    PRIORITISED = "prioritised"
    LOCATED = "located"
    ROUTED = "routed"
    SLA_SET = "sla_set"
    STATUS_CHANGED = "status_changed"
    TRIAGED = "triaged"
    TRANSFERRED = "transferred"
    ASSIGNEE_CHANGED = "assignee_changed"
    PUBLIC_REPLY = "public_reply"
    INTERNAL_NOTE = "internal_note"
    CITIZEN_REPLY = "citizen_reply"
    RATED = "rated"
    AFTER_PHOTOS = "after_photos"
    SUPPORTER_ADDED = "supporter_added"
    SUPPORTER_REMOVED = "supporter_removed"
    ORIGINAL_STATUS_CHANGED = "original_status_changed"
    SLA_AT_RISK = "sla_at_risk"
    SLA_BREACHED = "sla_breached"
    ACK_OVERDUE = "ack_overdue"
    ACKNOWLEDGE_DUE_SOON = "acknowledge_due_soon"
    DUE_SOON = "due_soon"
    ESCALATED = "escalated"
    PROCESSING_FAILED = "processing_failed"
    PERSONAL_DATA_ERASED = "personal_data_erased"


class WebhookType(StrEnum):
    CREATED = "report.created"
    CLASSIFIED = "report.classified"
    ASSIGNED = "report.assigned"
    STATUS_CHANGED = "report.status_changed"
    TRANSFERRED = "report.transferred"
    COMMENTED = "report.commented"
    SLA_AT_RISK = "report.sla_at_risk"
    SLA_BREACHED = "report.sla_breached"
    RESOLVED = "report.resolved"
    CLOSED = "report.closed"
    REOPENED = "report.reopened"
    ORIGINAL_STATUS_CHANGED = "report.original_status_changed"
    ACK_OVERDUE = "report.ack_overdue"
    CITIZEN_REPLIED = "report.citizen_replied"
    ACKNOWLEDGE_DUE_SOON = "report.acknowledge_due_soon"
    DUE_SOON = "report.due_soon"


WEBHOOK_TYPES: dict[WebhookType, str] = {
    WebhookType.CREATED: "A citizen filed a report.",
    WebhookType.CLASSIFIED: "The report's category was decided.",
    WebhookType.ASSIGNED: "The report is now assigned to a department (routed, triaged or transferred there).",
    WebhookType.STATUS_CHANGED: "The report's status changed (`previous_status` says from what).",
    WebhookType.TRANSFERRED: "The report moved to another department (sent to both).",
    WebhookType.COMMENTED: "Staff posted a public reply.",
    WebhookType.SLA_AT_RISK: "Most of the time to resolve has passed.",
    WebhookType.SLA_BREACHED: "The report is past its due date.",
    WebhookType.RESOLVED: "The department resolved the report.",
    WebhookType.CLOSED: "The report was closed.",
    WebhookType.REOPENED: "The report was reopened.",
    WebhookType.ORIGINAL_STATUS_CHANGED: "The report this duplicate repeats changed status (sent for the duplicate).",
    WebhookType.ACK_OVERDUE: "No one took the report into work by its acknowledgement deadline (`acknowledge_due_at`).",
    WebhookType.CITIZEN_REPLIED: "The citizen answered the question that put the report on hold (`comment`).",
    WebhookType.ACKNOWLEDGE_DUE_SOON: (
        "The acknowledgement deadline (`acknowledge_due_at`) is near and no one has taken the report into work; "
        "once per deadline."
    ),
    WebhookType.DUE_SOON: "The deadline to resolve (`due_at`) is near; once per deadline.",
}

# Timeline events that are webhook events by themselves (status changes are decided by the change).
NOTE_WEBHOOKS: dict[EventCode, WebhookType] = {
    EventCode.RECEIVED: WebhookType.CREATED,
    EventCode.PUBLIC_REPLY: WebhookType.COMMENTED,
    EventCode.SLA_AT_RISK: WebhookType.SLA_AT_RISK,
    EventCode.SLA_BREACHED: WebhookType.SLA_BREACHED,
    EventCode.ORIGINAL_STATUS_CHANGED: WebhookType.ORIGINAL_STATUS_CHANGED,
    EventCode.ACK_OVERDUE: WebhookType.ACK_OVERDUE,
    EventCode.CITIZEN_REPLY: WebhookType.CITIZEN_REPLIED,
    EventCode.ACKNOWLEDGE_DUE_SOON: WebhookType.ACKNOWLEDGE_DUE_SOON,
    EventCode.DUE_SOON: WebhookType.DUE_SOON,
}
# A status reached that has a webhook event of its own, besides report.status_changed.
STATUS_WEBHOOKS: dict[Status, WebhookType] = {
    Status.RESOLVED: WebhookType.RESOLVED,
    Status.CLOSED: WebhookType.CLOSED,
    Status.REOPENED: WebhookType.REOPENED,
}

# status -> (vi, en): what the citizen reads when the report reaches it.
STATUS_WORDS: dict[Status, tuple[str, str]] = {
    Status.RECEIVED: ("Đã tiếp nhận", "Received"),
    Status.NEEDS_TRIAGE: ("Đang chờ phân loại", "Waiting for a dispatcher"),
    Status.ASSIGNED: ("Đã chuyển đơn vị xử lý", "Assigned to a department"),
    Status.IN_PROGRESS: ("Đang xử lý", "In progress"),
    Status.ON_HOLD: ("Chờ người dân bổ sung thông tin", "Waiting for your answer"),
    Status.RESOLVED: ("Đã giải quyết", "Resolved"),
    Status.CLOSED: ("Đã đóng", "Closed"),
    Status.REJECTED: ("Không thụ lý", "Rejected"),
    Status.DUPLICATE: ("Trùng phản ánh khác", "Duplicate of another report"),
    Status.REOPENED: ("Đã mở lại", "Reopened"),
}

# code -> (vi, en) templates over the event's data; codes whose text a person wrote are not here.
_TEMPLATES: dict[EventCode, tuple[str, str]] = {
    EventCode.RECEIVED: ("Đã tiếp nhận phản ánh", "Report received"),
    EventCode.TRANSFERRED: ("Chuyển đến {department}", "Transferred to {department}"),
    EventCode.TRIAGED: ("Đã phân loại: {status}", "Triaged: {status}"),
    EventCode.ORIGINAL_STATUS_CHANGED: (
        "Phản ánh gốc {original}: {status}",
        "Original report {original}: {status}",
    ),
    EventCode.SLA_AT_RISK: ("Sắp đến hạn xử lý", "Close to its deadline"),
    EventCode.SLA_BREACHED: ("Đã quá hạn xử lý", "Past its deadline"),
    EventCode.ACK_OVERDUE: ("Quá hạn tiếp nhận xử lý", "Not taken into work by its acknowledgement deadline"),
    EventCode.ACKNOWLEDGE_DUE_SOON: ("Sắp đến hạn tiếp nhận xử lý", "Close to its acknowledgement deadline"),
    EventCode.DUE_SOON: ("Sắp đến hạn giải quyết", "Close to its deadline to resolve"),
    EventCode.ESCALATED: ("Chuyển lên đơn vị cấp trên", "Escalated to the supervising unit"),
    EventCode.PROCESSING_FAILED: (
        "Đang chờ cán bộ xử lý thủ công",
        "Waiting for a dispatcher to look at it",
    ),
    # Only for photos sent without a message: with one, the message is the entry's words.
    EventCode.CITIZEN_REPLY: ("Người dân đã gửi thêm ảnh", "The citizen sent photos"),
    EventCode.AFTER_PHOTOS: ("Đã thêm ảnh sau khi xử lý", "Photos of the work done were added"),
}
_PHOTOS_OR_WORDS = (EventCode.CITIZEN_REPLY, EventCode.AFTER_PHOTOS)


def status_words(status: str | None, vietnamese: bool) -> str:
    try:
        words = STATUS_WORDS[Status(status or "")]
    except ValueError:
        return status or ""
    return words[0] if vietnamese else words[1]


def render(code: str, data: Mapping[str, Any], written: str | None, *, vietnamese: bool) -> str | None:
    """The entry's message in the reader's language: what a person wrote, else the code's words."""
    moved = data.get("original_status") if code == EventCode.ORIGINAL_STATUS_CHANGED else data.get("status")
    status = moved.get("to") if isinstance(moved, dict) else moved
    if code == EventCode.STATUS_CHANGED:
        words = status_words(status, vietnamese)
        # A rejection shows its reason; a citizen's reopening shows theirs.
        return f"{words}: {written}" if written else words
    if code in (EventCode.PUBLIC_REPLY, EventCode.INTERNAL_NOTE) or (code in _PHOTOS_OR_WORDS and written):
        return written  # what a person wrote; photos sent without a word get the code's words below
    template = _TEMPLATES.get(code)  # type: ignore[call-overload]  # a str equal to a member finds it
    if template is None:
        return written
    department = data.get("department_name") or {}
    values = {
        "status": status_words(status, vietnamese),
        "department": (department.get("vi") if vietnamese else department.get("en")) or data.get("department") or "",
        "original": data.get("original") or "",
    }
    return (template[0] if vietnamese else template[1]).format(**values)
