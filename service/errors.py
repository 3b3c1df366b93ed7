"""Typed domain errors and the one problem-details (RFC 9457) shape every 4xx and 5xx answers in."""

import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from asgi_correlation_id import correlation_id
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.convertors import PathConvertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://intake.example/problems/"


class ErrorCode(StrEnum):
    """Every error code the API answers with, defined once; MESSAGES gives each its words."""

    VALIDATION_ERROR = "validation_error"
    NOT_FOUND = "not_found"
    REPORT_NOT_FOUND = "report_not_found"
    PHOTO_NOT_FOUND = "photo_not_found"
    PHOTO_NOT_READY = "photo_not_ready"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    PHOTO_DIMENSIONS_TOO_LARGE = "photo_dimensions_too_large"
    TOO_MANY_PHOTOS = "too_many_photos"
    LOCATION_REQUIRED = "location_required"
    OUTSIDE_SERVICE_AREA = "outside_service_area"
    UNKNOWN_SERVICE_CODE = "unknown_service_code"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"
    TEXT_NOT_STORABLE = "text_not_storable"
    INVALID_WINDOW = "invalid_window"
    TOO_MANY_BUCKETS = "too_many_buckets"
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_TOKEN = "invalid_token"
    WRONG_PASSWORD = "wrong_password"
    STAFF_ONLY = "staff_only"
    UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
    AMBIGUOUS_CREDENTIALS = "ambiguous_credentials"
    TICKET_NOT_FOUND = "ticket_not_found"
    ILLEGAL_TRANSITION = "illegal_transition"
    NOT_YET_PROCESSED = "not_yet_processed"
    PRECONDITION_FAILED = "precondition_failed"
    PUBLIC_REPLY_REQUIRED = "public_reply_required"
    REASON_REQUIRED = "reason_required"
    QUESTION_REQUIRED = "question_required"
    UNKNOWN_DEPARTMENT = "unknown_department"
    UNKNOWN_CATEGORY = "unknown_category"
    SAME_DEPARTMENT = "same_department"
    DUPLICATE_OF_ITSELF = "duplicate_of_itself"
    ORIGINAL_IS_DUPLICATE = "original_is_duplicate"
    INVALID_CITIZEN_TOKEN = "invalid_citizen_token"
    NOT_ON_HOLD = "not_on_hold"
    NOT_RESOLVED = "not_resolved"
    REOPEN_WINDOW_PASSED = "reopen_window_passed"
    ALREADY_REOPENED = "already_reopened"
    RATE_LIMITED = "rate_limited"
    INVALID_CURSOR = "invalid_cursor"
    ATTRIBUTE_REQUIRED = "attribute_required"
    ATTRIBUTE_INVALID = "attribute_invalid"
    UNKNOWN_ATTRIBUTE = "unknown_attribute"
    JURISDICTION_NOT_FOUND = "jurisdiction_not_found"
    SERVICE_NOT_FOUND = "service_not_found"
    TOKEN_NOT_FOUND = "token_not_found"
    UNKNOWN_JURISDICTION = "unknown_jurisdiction"
    WEBHOOK_URL_INVALID = "webhook_url_invalid"
    WEBHOOK_URL_HTTPS_REQUIRED = "webhook_url_https_required"
    WEBHOOK_URL_NOT_ALLOWED = "webhook_url_not_allowed"
    WEBHOOK_URL_UNRESOLVABLE = "webhook_url_unresolvable"
    WEBHOOK_SCOPE_FORBIDDEN = "webhook_scope_forbidden"
    WEBHOOK_SUBSCRIPTION_NOT_FOUND = "webhook_subscription_not_found"
    WEBHOOK_EVENT_NOT_FOUND = "webhook_event_not_found"
    WEBHOOK_SUBSCRIPTION_DISABLED = "webhook_subscription_disabled"
    UNKNOWN_STATUS = "unknown_status"
    UNKNOWN_ASSIGNEE = "unknown_assignee"
    ALREADY_CLAIMED = "already_claimed"
    NOT_YOUR_TICKET = "not_your_ticket"
    BAD_REQUEST = "bad_request"
    CONFLICT = "conflict"


# code -> (English, Vietnamese). One line per error the API can give.
MESSAGES: dict[ErrorCode, tuple[str, str]] = {
    ErrorCode.BAD_REQUEST: ("The request cannot be processed.", "Yêu cầu không thể xử lý."),
    ErrorCode.CONFLICT: ("The request conflicts with the current state.", "Yêu cầu mâu thuẫn với trạng thái hiện tại."),
    ErrorCode.VALIDATION_ERROR: ("The request has invalid fields.", "Yêu cầu có trường dữ liệu không hợp lệ."),
    ErrorCode.NOT_FOUND: ("Not found.", "Không tìm thấy."),
    ErrorCode.REPORT_NOT_FOUND: ("No report has this tracking code.", "Không có phản ánh nào với mã này."),
    ErrorCode.PHOTO_NOT_FOUND: ("No photo with this id.", "Không có ảnh với mã này."),
    ErrorCode.PHOTO_NOT_READY: (
        "The photo is still being processed; try again shortly.",
        "Ảnh đang được xử lý, vui lòng thử lại sau ít phút.",
    ),
    ErrorCode.UNAUTHENTICATED: ("A valid API key is required (X-API-Key).", "Cần khóa API hợp lệ (X-API-Key)."),
    ErrorCode.FORBIDDEN: ("You are not allowed to do this.", "Bạn không có quyền thực hiện thao tác này."),
    ErrorCode.METHOD_NOT_ALLOWED: ("Method not allowed.", "Phương thức không được hỗ trợ."),
    ErrorCode.IDEMPOTENCY_CONFLICT: (
        "This Idempotency-Key was already used with a different request.",
        "Khóa Idempotency-Key này đã được dùng cho một yêu cầu khác.",
    ),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: (
        "Only JPEG, PNG, WebP and HEIC photos are accepted.",
        "Chỉ nhận ảnh JPEG, PNG, WebP hoặc HEIC.",
    ),
    ErrorCode.UNSUPPORTED_CONTENT_TYPE: (
        "Send application/json or multipart/form-data.",
        "Vui lòng gửi application/json hoặc multipart/form-data.",
    ),
    ErrorCode.PAYLOAD_TOO_LARGE: ("The upload is too large.", "Dữ liệu tải lên quá lớn."),
    ErrorCode.REQUEST_TIMEOUT: (
        "The request's body stopped arriving before it was complete; send it again.",
        "Dữ liệu của yêu cầu ngừng gửi đến trước khi hoàn tất; vui lòng gửi lại.",
    ),
    ErrorCode.PHOTO_DIMENSIONS_TOO_LARGE: (
        "The photo has too many pixels (width x height) to be processed.",
        "Ảnh có kích thước (số điểm ảnh) quá lớn để xử lý.",
    ),
    ErrorCode.TOO_MANY_PHOTOS: ("Too many photos in one report.", "Quá nhiều ảnh trong một phản ánh."),
    ErrorCode.LOCATION_REQUIRED: (
        "Give a location (lat/lon), an address, or a photo with GPS data.",
        "Vui lòng cung cấp vị trí (vĩ độ/kinh độ), địa chỉ hoặc ảnh có tọa độ GPS.",
    ),
    ErrorCode.OUTSIDE_SERVICE_AREA: (
        "The location is outside the city's service area.",
        "Vị trí nằm ngoài phạm vi tiếp nhận của thành phố.",
    ),
    ErrorCode.UNKNOWN_SERVICE_CODE: ("Unknown service_code.", "Lĩnh vực (service_code) không tồn tại."),
    ErrorCode.SERVICE_UNAVAILABLE: (
        "The service is temporarily unavailable; retry with the same Idempotency-Key.",
        "Hệ thống tạm thời gián đoạn; vui lòng thử lại với cùng Idempotency-Key.",
    ),
    ErrorCode.INTERNAL_ERROR: ("Something went wrong on our side.", "Đã có lỗi xảy ra phía hệ thống."),
    ErrorCode.TEXT_NOT_STORABLE: (
        "Text fields may not contain NUL (\\u0000) or half a surrogate pair (\\ud800–\\udfff alone).",
        "Các trường văn bản không được chứa ký tự NUL (\\u0000) hay nửa cặp surrogate (\\ud800–\\udfff đứng một mình).",
    ),
    ErrorCode.INVALID_WINDOW: (
        "The time window is empty: `from` must be before `to`.",
        "Khoảng thời gian không hợp lệ: `from` phải trước `to`.",
    ),
    ErrorCode.TOO_MANY_BUCKETS: (
        "Too many time buckets for this window; choose a larger bucket or a shorter window.",
        "Quá nhiều mốc thời gian cho khoảng này; hãy chọn đơn vị lớn hơn hoặc khoảng ngắn hơn.",
    ),
    ErrorCode.INVALID_CREDENTIALS: ("Wrong username or password.", "Sai tên đăng nhập hoặc mật khẩu."),
    ErrorCode.INVALID_TOKEN: ("The token is invalid or expired.", "Mã truy cập không hợp lệ hoặc đã hết hạn."),
    ErrorCode.WRONG_PASSWORD: ("The current password is wrong.", "Mật khẩu hiện tại không đúng."),
    ErrorCode.STAFF_ONLY: (
        "Only a staff user signed in with a password can do this, not an API key.",
        "Chỉ cán bộ đăng nhập bằng mật khẩu mới thực hiện được thao tác này, không dùng khóa API.",
    ),
    ErrorCode.UNSUPPORTED_GRANT_TYPE: (
        "The token endpoint takes grant_type password or refresh_token.",
        "Điểm cấp mã chỉ nhận grant_type là password hoặc refresh_token.",
    ),
    ErrorCode.AMBIGUOUS_CREDENTIALS: (
        "Send one credential: a Bearer token or an X-API-Key, not both.",
        "Chỉ gửi một thông tin xác thực: Bearer token hoặc X-API-Key, không gửi cả hai.",
    ),
    ErrorCode.TICKET_NOT_FOUND: ("No ticket with this id is visible to you.", "Không tìm thấy phiếu xử lý này."),
    ErrorCode.ILLEGAL_TRANSITION: ("This status change is not allowed.", "Không được chuyển sang trạng thái này."),
    ErrorCode.NOT_YET_PROCESSED: (
        "The report is still being processed (located, prioritised, checked for duplicates, routed); "
        "try again in a moment. Until then it can only be rejected.",
        "Phản ánh đang được hệ thống xử lý (xác định vị trí, mức độ ưu tiên, kiểm tra trùng, phân công); "
        "vui lòng thử lại sau giây lát. Trong lúc này chỉ có thể từ chối phản ánh.",
    ),
    ErrorCode.PRECONDITION_FAILED: (
        "The ticket changed since you read it (If-Match does not match its ETag); read it again.",
        "Phiếu đã thay đổi kể từ khi bạn xem (If-Match không khớp ETag); vui lòng tải lại.",
    ),
    ErrorCode.PUBLIC_REPLY_REQUIRED: (
        "Resolving needs a public reply to the citizen.",
        "Cần có phản hồi công khai cho người dân khi hoàn thành.",
    ),
    ErrorCode.REASON_REQUIRED: ("A reason is required.", "Cần nêu lý do."),
    ErrorCode.QUESTION_REQUIRED: (
        "Putting on hold needs a question to the citizen.",
        "Cần đặt câu hỏi cho người dân khi tạm dừng.",
    ),
    ErrorCode.UNKNOWN_DEPARTMENT: ("Unknown department.", "Đơn vị không tồn tại."),
    ErrorCode.UNKNOWN_CATEGORY: ("Unknown category (service_code).", "Lĩnh vực không tồn tại."),
    ErrorCode.SAME_DEPARTMENT: ("The ticket is already with this department.", "Phiếu đã thuộc đơn vị này."),
    ErrorCode.DUPLICATE_OF_ITSELF: (
        "A ticket cannot be a duplicate of itself.",
        "Phiếu không thể trùng với chính nó.",
    ),
    ErrorCode.ORIGINAL_IS_DUPLICATE: (
        "The named original is itself a duplicate: name the report it repeats.",
        "Phản ánh được chọn làm gốc cũng là phản ánh trùng: hãy chọn phản ánh gốc của nó.",
    ),
    ErrorCode.INVALID_CITIZEN_TOKEN: (
        "The tracking code and token do not match.",
        "Mã theo dõi và mã bí mật không khớp.",
    ),
    ErrorCode.NOT_ON_HOLD: ("This report is not waiting for an answer.", "Phản ánh này không chờ người dân trả lời."),
    ErrorCode.NOT_RESOLVED: (
        "Only a resolved report can be rated or reopened.",
        "Chỉ phản ánh đã giải quyết mới được đánh giá hoặc mở lại.",
    ),
    ErrorCode.REOPEN_WINDOW_PASSED: ("The time to reopen this report has passed.", "Đã quá thời hạn mở lại phản ánh."),
    ErrorCode.ALREADY_REOPENED: ("This report was already reopened once.", "Phản ánh này đã được mở lại một lần."),
    ErrorCode.RATE_LIMITED: (
        "Too many requests; slow down and retry later.",
        "Quá nhiều yêu cầu; vui lòng thử lại sau.",
    ),
    ErrorCode.INVALID_CURSOR: ("The cursor is not valid.", "Con trỏ phân trang không hợp lệ."),
    ErrorCode.ATTRIBUTE_REQUIRED: ("A required attribute is missing.", "Thiếu thông tin bắt buộc của lĩnh vực này."),
    ErrorCode.ATTRIBUTE_INVALID: ("An attribute has an invalid value.", "Thông tin bổ sung có giá trị không hợp lệ."),
    ErrorCode.UNKNOWN_ATTRIBUTE: ("Unknown attribute for this service.", "Thông tin bổ sung không thuộc lĩnh vực này."),
    ErrorCode.JURISDICTION_NOT_FOUND: ("Unknown jurisdiction_id.", "Không có đơn vị (jurisdiction_id) này."),
    ErrorCode.SERVICE_NOT_FOUND: ("No service has this service_code.", "Không có lĩnh vực với mã này."),
    ErrorCode.TOKEN_NOT_FOUND: ("No service request has this token.", "Không có phản ánh nào với token này."),
    ErrorCode.UNKNOWN_JURISDICTION: ("Unknown jurisdiction.", "Địa bàn không tồn tại."),
    ErrorCode.UNKNOWN_STATUS: (
        "Unknown status: use a status, `open` or `closed`.",
        "Trạng thái không hợp lệ: dùng một trạng thái, `open` hoặc `closed`.",
    ),
    ErrorCode.UNKNOWN_ASSIGNEE: (
        "Unknown assignee: use `me`, `none`, or a staff member's id or username.",
        "Người xử lý không hợp lệ: dùng `me`, `none`, hoặc mã hay tên đăng nhập của cán bộ.",
    ),
    ErrorCode.ALREADY_CLAIMED: (
        "Another officer already holds this ticket; a dispatcher or supervisor can reassign it.",
        "Phiếu đã có cán bộ khác nhận; điều phối viên hoặc lãnh đạo có thể giao lại.",
    ),
    ErrorCode.NOT_YOUR_TICKET: (
        "Only the officer holding this ticket can give it back.",
        "Chỉ cán bộ đang giữ phiếu mới trả lại được.",
    ),
    ErrorCode.WEBHOOK_URL_INVALID: (
        "The webhook URL must be an absolute http(s) URL.",
        "URL webhook phải là địa chỉ http(s) đầy đủ.",
    ),
    ErrorCode.WEBHOOK_URL_HTTPS_REQUIRED: (
        "Only https webhook URLs are accepted.",
        "Chỉ chấp nhận URL webhook dùng https.",
    ),
    ErrorCode.WEBHOOK_URL_NOT_ALLOWED: (
        "The webhook URL points to a private, loopback or link-local address.",
        "URL webhook trỏ tới địa chỉ mạng nội bộ, loopback hoặc link-local.",
    ),
    ErrorCode.WEBHOOK_URL_UNRESOLVABLE: (
        "The webhook URL's host name does not resolve.",
        "Không phân giải được tên máy chủ của URL webhook.",
    ),
    ErrorCode.WEBHOOK_SCOPE_FORBIDDEN: (
        "This subscription would reach reports outside what you may see.",
        "Đăng ký này vượt quá phạm vi phản ánh bạn được xem.",
    ),
    ErrorCode.WEBHOOK_SUBSCRIPTION_NOT_FOUND: (
        "No webhook subscription with this id.",
        "Không có đăng ký webhook với mã này.",
    ),
    ErrorCode.WEBHOOK_EVENT_NOT_FOUND: (
        "No event with this id for this subscription.",
        "Không có sự kiện với mã này cho đăng ký này.",
    ),
    ErrorCode.WEBHOOK_SUBSCRIPTION_DISABLED: (
        "The subscription is disabled; re-enable it first.",
        "Đăng ký webhook đang bị tắt; hãy bật lại trước.",
    ),
}


class FieldError(BaseModel):
    field: str
    code: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, plus a machine-readable `code` and per-field `errors`."""

    type: str
    title: str
    status: int
    detail: str | None = None
    code: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] = []


class TokenProblem(Problem):
    """The token endpoint's errors: problem details that are also an OAuth2 error response (RFC 6749
    §5.2), so that OAuth2 client libraries and Swagger UI's "Authorize" read them as such."""

    error: str | None = Field(
        default=None,
        description="RFC 6749 error code of a refused grant: invalid_grant, unsupported_grant_type, invalid_request",
    )
    error_description: str | None = Field(default=None, description="The English message, for the OAuth2 client")


class AppError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        code: str | None = None,
        detail: str | None = None,
        *,
        headers: dict | None = None,
        extensions: dict[str, Any] | None = None,
    ):
        self.code = code or self.code
        self.detail = detail
        self.headers = headers or {}
        # Extension members (RFC 9457 §3.2) added to the problem details, such as OAuth2's `error`.
        self.extensions = extensions or {}
        super().__init__(self.code)


class NotFound(AppError):
    status, code = 404, "not_found"


class Unauthenticated(AppError):
    status, code = 401, "unauthenticated"


class Forbidden(AppError):
    status, code = 403, "forbidden"


class Conflict(AppError):
    status, code = 409, "conflict"


class PayloadTooLarge(AppError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(AppError):
    status, code = 415, "unsupported_media_type"


class PreconditionFailed(AppError):
    status, code = 412, "precondition_failed"


class Unprocessable(AppError):
    """A well-formed request the service cannot accept; `field` names the culprit."""

    status, code = 422, "validation_error"

    def __init__(
        self, code: str, field: str, detail: str | None = None, *, fields: list[tuple[str, str, str]] | None = None
    ):
        super().__init__(code, detail)
        self.field = field
        # Several culprits at once: (field, code, English message) each; by default the one field.
        self.fields = fields or []


class ServiceUnavailable(AppError):
    status, code = 503, "service_unavailable"


class InvalidFields(AppError):
    """A body a route validates itself (with pydantic), refused like FastAPI's own 422."""

    status, code = 422, "validation_error"

    def __init__(self, errors: list[dict[str, Any]], *, extensions: dict[str, Any] | None = None):
        super().__init__(extensions=extensions)
        self.errors = errors


def wants_vietnamese(request: Request) -> bool:
    header = request.headers.get("accept-language", "")
    # First listed language wins; quality values are rare from mobile apps.
    first = header.split(",")[0].strip().lower()
    return first.startswith("vi")


def timeline_in_vietnamese(request: Request) -> bool:
    """Timeline messages are Vietnamese unless the reader asks for English first (the city's language
    is the default for what it tells citizens; error titles keep English as theirs)."""
    first = request.headers.get("accept-language", "").split(",")[0].strip().lower()
    return not first.startswith("en")


def message_for(code: str, request: Request) -> str:
    known = ErrorCode(code) if code in ErrorCode.__members__.values() else None
    english, vietnamese = MESSAGES[known] if known else (code.replace("_", " ").capitalize() + ".",) * 2
    return vietnamese if wants_vietnamese(request) else english


# Path prefix -> the answer in another error format, for clients that expect their own (Open311).
OtherFormat = Callable[[Request, int, str, str, list[FieldError], dict], Response]


def answer_errors_as(app: FastAPI, prefix: str, render: OtherFormat) -> None:
    """Every error under `prefix`, from a route, a handler or a middleware, in the format `render` makes."""
    if not hasattr(app.state, "error_formats"):
        app.state.error_formats = {}
    app.state.error_formats[prefix] = render


def _other_format(request: Request) -> OtherFormat | None:
    app = request.scope.get("app")
    formats = getattr(app.state, "error_formats", {}) if app is not None else {}
    path = request.url.path
    return next((render for prefix, render in formats.items() if path.startswith(prefix)), None)


def problem_of(
    request: Request, status: int, code: str, detail: str | None = None, errors: list[FieldError] | None = None
) -> Problem:
    return Problem(
        type=PROBLEM_TYPE_BASE + code,
        title=message_for(code, request),
        status=status,
        detail=detail,
        code=code,
        instance=request.url.path,
        request_id=correlation_id.get(),
        errors=errors or [],
    )


def problem_of_error(request: Request, exc: AppError) -> Problem:
    """The problem an AppError answers with."""
    return problem_of(request, exc.status, exc.code, exc.detail, _field_errors(request, exc))


def _field_errors(request: Request, exc: AppError) -> list[FieldError] | None:
    """An Unprocessable names the field at fault."""
    if isinstance(exc, Unprocessable):
        vietnamese = wants_vietnamese(request)
        return [
            FieldError(field=field, code=code, message=message_for(code, request) if vietnamese else message)
            for field, code, message in exc.fields
        ] or [FieldError(field=exc.field, code=exc.code, message=message_for(exc.code, request))]
    if isinstance(exc, InvalidFields):
        return field_errors_from_pydantic(exc.errors, request)
    return None


def problem_response(
    request: Request,
    status: int,
    code: str,
    detail: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response:
    if (render := _other_format(request)) is not None:
        return render(request, status, code, detail or message_for(code, request), errors or [], headers or {})
    return JSONResponse(
        {**problem_of(request, status, code, detail, errors).model_dump(exclude_none=True), **(extensions or {})},
        status_code=status,
        media_type="application/problem+json",
        headers={"Content-Language": "vi" if wants_vietnamese(request) else "en", **(headers or {})},
    )


def _field_name(loc: tuple | list) -> str:
    # Drop the leading "body"/"query"/"path" so apps see the field as they sent it.
    parts = [str(part) for part in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "form"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


VALIDATION_MESSAGES_VI = {
    "missing": "Thiếu trường bắt buộc.",
    "string_too_short": "Quá ngắn.",
    "string_too_long": "Quá dài.",
    "less_than_equal": "Giá trị quá lớn.",
    "greater_than_equal": "Giá trị quá nhỏ.",
    "finite_number": "Phải là một số hữu hạn (không phải NaN hay vô cực).",
    "extra_forbidden": "Trường không được hỗ trợ.",
    "json_invalid": "JSON không hợp lệ.",
}


def field_errors_from_pydantic(errors: list[dict[str, Any]], request: Request) -> list[FieldError]:
    vietnamese = wants_vietnamese(request)
    out = []
    for error in errors:
        kind = error.get("type", "invalid")
        message = VALIDATION_MESSAGES_VI.get(kind, "Giá trị không hợp lệ.") if vietnamese else error.get("msg", "")
        out.append(FieldError(field=_field_name(error.get("loc", ())), code=kind, message=message))
    return out


PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _problem_content(declared: dict | None) -> dict:
    """Problem, unless the route declared a problem schema with more members of its own (TokenProblem)."""
    # FastAPI files a `responses=` model under application/json; the media type we send is set here.
    refs = [media.get("schema", {}).get("$ref", "") for media in (declared or {}).values()]
    ref = next((ref for ref in refs if ref), "")
    if ref.startswith("#/components/schemas/") and ref != PROBLEM_CONTENT["application/problem+json"]["schema"]["$ref"]:
        return {"application/problem+json": {"schema": {"$ref": ref}}}
    return PROBLEM_CONTENT


def _document_problems(app: FastAPI) -> None:
    """Make the spec say what the handlers below send: every error is `application/problem+json` with
    the Problem schema, including the 422 FastAPI documents on its own as `application/json`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                answers_problems = False
                for status, response in responses.items():
                    content = response.get("content", {})
                    is_fastapi_422 = status == "422" and "HTTPValidationError" in str(content)
                    if is_fastapi_422 or "application/problem+json" in content:
                        answers_problems = True
                        response["content"] = _problem_content(None if is_fastapi_422 else content)
                        response["description"] = (
                            "Problem details" if not is_fastapi_422 else "Invalid fields (problem details)"
                        )
                if not answers_problems:
                    continue  # answers errors its own way (Open311, health checks)
                # What every route may answer, from the middleware and handlers rather than the route:
                # a body over its cap or nested too deep (service.body_limits), and an outage.
                if "requestBody" in operation:
                    responses.setdefault("413", {"description": "The body is too large", "content": PROBLEM_CONTENT})
                    responses.setdefault(
                        "422", {"description": "Invalid fields (problem details)", "content": PROBLEM_CONTENT}
                    )
                responses.setdefault(
                    "503",
                    {"description": "The database or Redis is unavailable: retry later", "content": PROBLEM_CONTENT},
                )
                for status in ("429", "503"):  # both always say when to come back
                    if status in responses:
                        responses[status]["headers"] = RETRY_AFTER
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "Problem" not in components:
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(problem.pop("$defs", {}))
            components["Problem"] = problem
        if "HTTPValidationError" not in str(schema["paths"]):
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema


def install_error_handlers(app: FastAPI) -> None:
    _document_problems(app)

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> Response:
        return problem_response(
            request, exc.status, exc.code, exc.detail, _field_errors(request, exc), exc.headers, exc.extensions
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = field_errors_from_pydantic(list(exc.errors()), request)
        return problem_response(request, 422, "validation_error", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # FastAPI and Starlette answer a body they cannot parse (JSON that is not UTF-8, multipart
            # without a boundary) with a bare 400; it is a request with invalid fields like any other.
            return problem_response(
                request,
                422,
                "validation_error",
                errors=[FieldError(field="body", code="body_invalid", message=str(exc.detail))],
            )
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated", 403: "forbidden"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(request, exc.status_code, code, headers=headers)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # A hang-up mid-body is the client's doing, not a fault: one quiet line, counted as a 4xx.
        log.info("client disconnected before its request was read", extra={"path": request.url.path})
        return problem_response(request, 400, "bad_request", "The client closed the connection mid-request.")

    # The outage classes are answered by Starlette's ExceptionMiddleware, which keeps the connection
    # open. Anything else is answered by service.edge.Edge (with the security headers and request id);
    # `Exception` here only covers what reaches Starlette's ServerErrorMiddleware without passing Edge.
    for kind in (DBAPIError, PoolTimeout, ConnectionError, TimeoutError, Exception):
        app.add_exception_handler(kind, answer_unexpected)


async def answer_unexpected(request: Request, exc: Exception) -> Response:
    """The answer to an exception no handler took: 422 for text the database cannot store, 503 in an
    outage (one line, no traceback), else 500 with the traceback logged once."""
    if is_unstorable_text(exc):
        return problem_response(request, 422, "text_not_storable")
    if is_outage(exc):
        # Expected in an outage and answered: one line, no traceback, no statement.
        log.warning("dependency unavailable, answered 503: %s", type(exc).__name__, extra={"path": request.url.path})
        return problem_response(request, 503, "service_unavailable", headers={"Retry-After": "2"})
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return problem_response(request, 500, "internal_error")


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes on this path. Starlette's own 405 names only the methods of the
    first route matching the path, though GET and POST on one path are usually two routes. A literal
    path's own routes come before routes that match it through a parameter. A catch-all
    route (Open311's "no such resource") counts only where no resource's own route matches: on a
    resource's path it answers 404, so it makes no method allowed there."""

    def methods(routes) -> list[str]:
        return [
            method
            for method in METHODS
            if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
        ]

    routes = list(_leaf_routes(request.app.router.routes))
    # HEAD is answered wherever GET is (service/edge.py), though FastAPI's routes name GET only.
    # A path named literally (`/v1/tickets/bulk`) is its own resource, which a route with a parameter
    # (`/v1/tickets/{ticket}`) only happens to match as well.
    literal = [route for route in routes if getattr(route, "path", None) == request.scope["path"]]
    found = methods(literal) or methods([route for route in routes if not _is_catch_all(route)]) or methods(routes)
    return [method for method in METHODS if method in found or (method == "HEAD" and "GET" in found)]


def _leaf_routes(routes):
    """The routes themselves: FastAPI keeps each included router as one route that holds its own."""
    for route in routes:
        if hasattr(route, "effective_candidates"):
            yield from _leaf_routes(route.effective_candidates())
        else:
            yield route


def _is_catch_all(route) -> bool:
    return any(isinstance(convertor, PathConvertor) for convertor in getattr(route, "param_convertors", {}).values())


# PostgreSQL refuses text it cannot store: a NUL character (22021) or one its encoding lacks (22P05).
# Only a client puts those in a request, in whichever field, so it is the client's error on every route.
UNSTORABLE_TEXT_SQLSTATES = frozenset({"22021", "22P05"})


def is_unstorable_text(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in UNSTORABLE_TEXT_SQLSTATES


def is_outage(exc: BaseException) -> bool:
    """A database or network that is down or slow: the client should retry, it did nothing wrong."""
    # PoolTimeout: every pooled connection busy for pool_timeout (a burst beyond DB_POOL_SIZE + DB_MAX_OVERFLOW).
    return isinstance(exc, (OperationalError, InterfaceError, ConnectionError, TimeoutError, PoolTimeout)) or (
        isinstance(exc, DBAPIError)
        and (exc.connection_invalidated or str(getattr(exc.orig, "sqlstate", "")).startswith(_OUTAGE_SQLSTATES))
    )


# PostgreSQL answers that mean "not now": 08 connection exceptions, 53 insufficient resources (too many
# clients: more API and worker processes than max_connections allows), 57P0x shutting down or starting.
_OUTAGE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03")


# For `responses=` in route declarations, so the OpenAPI spec lists the error shape.
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": Problem, "content": {"application/problem+json": {}}, "description": "Problem details"}
        for status in statuses
    }
