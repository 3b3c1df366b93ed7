"""Optimistic concurrency on tickets: an ETag from the ticket's revision, and If-Match checked on every write.

The revision is bumped by every change a reader would see (service.lifecycle), so two officers working
the same ticket cannot overwrite each other unknowingly: the second write, sent with the ETag it read,
answers 412 and changes nothing.
"""

from service.errors import PreconditionFailed
from service.models import Report

IF_MATCH_DESCRIPTION = (
    "The ETag of the ticket as you last read it; a stale one answers 412 and changes nothing. `*` matches any."
)


def etag_of(report: Report) -> str:
    return f'"{report.id.hex[:12]}-{report.revision}"'


def check_if_match(report: Report, if_match: str | None) -> None:
    """RFC 9110 If-Match with the strong comparison: any listed tag equal to the current one passes."""
    if if_match is None:
        return
    wanted = [tag.strip() for tag in if_match.split(",") if tag.strip()]
    if "*" in wanted:
        return
    if etag_of(report) not in wanted:
        raise PreconditionFailed(detail=f"current ETag: {etag_of(report)}", headers={"ETag": etag_of(report)})
