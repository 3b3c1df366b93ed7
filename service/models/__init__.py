"""All tables, imported here so Alembic and the app see one complete metadata."""

from service.models.catalogue import (
    CatalogueVersion,
    Department,
    Jurisdiction,
    RoutingRule,
    ServiceCategory,
    SlaPolicyRow,
)
from service.models.identity import ApiClient, RefreshToken, StaffUser
from service.models.ioc import IocDailyRollup, IocRollupState
from service.models.report import Photo, Report, ReportEvent, ReportRow
from service.models.webhook import WebhookDeliveryAttempt, WebhookEvent, WebhookStream, WebhookSubscription

__all__ = [
    "ApiClient",
    "CatalogueVersion",
    "Department",
    "IocDailyRollup",
    "IocRollupState",
    "Jurisdiction",
    "Photo",
    "RefreshToken",
    "Report",
    "ReportEvent",
    "ReportRow",
    "RoutingRule",
    "ServiceCategory",
    "SlaPolicyRow",
    "StaffUser",
    "WebhookDeliveryAttempt",
    "WebhookEvent",
    "WebhookStream",
    "WebhookSubscription",
]
