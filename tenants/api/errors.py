"""The one error shape of the API (seed 000): every 4xx/5xx answer, from DRF views and from plain
Django alike, goes through `error_payload`."""

import logging
from http import HTTPStatus

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

# DRF's stock messages, said the way the seed says them ("quantity should not be empty").
_MESSAGE_TEMPLATES = {
    "This field is required.": "{field} should not be empty",
    "This field may not be blank.": "{field} should not be empty",
    "This field may not be null.": "{field} should not be null",
    "A valid integer is required.": "{field} must be an integer number",
    "A valid number is required.": "{field} must be a number",
    "Must be a valid boolean.": "{field} must be a boolean value",
    "Enter a valid email address.": "{field} must be an email",
    "Must be a valid UUID.": "{field} must be a UUID",
    "Not a valid string.": "{field} must be a string",
}


def _status_title(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Error"


def error_payload(
    status_code: int,
    messages: list[str],
    *,
    errors: dict[str, list[str]] | None = None,
    title: str | None = None,
) -> dict:
    title = title or _status_title(status_code)
    payload = {
        "statusCode": status_code,
        "message": messages,
        "error": title,
        "internalError": {"statusCode": status_code, "message": messages, "error": title},
    }
    if errors is not None:
        payload["errors"] = errors
    return payload


def error_response(status_code: int, messages: list[str], **kwargs) -> JsonResponse:
    """The error shape from plain Django code (middleware, URL handlers)."""
    return JsonResponse(error_payload(status_code, messages, **kwargs), status=status_code)


def _field_message(path: str, message: str) -> str:
    field = path.rsplit(".", 1)[-1] if path else ""
    if not path or path == "non_field_errors":
        return message
    template = _MESSAGE_TEMPLATES.get(message)
    if template:
        return template.format(field=path)
    if message.startswith(field):
        return message
    return f"{path}: {message}"


def flatten_validation_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into `{dotted.path: [messages]}` (`events.3.code`)."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            for sub_path, messages in flatten_validation_errors(value, path).items():
                flat.setdefault(sub_path, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            flat.setdefault(prefix or "non_field_errors", []).extend(
                _field_message(prefix, str(item)) for item in detail
            )
        else:
            for index, value in enumerate(detail):
                if not value:
                    continue
                path = f"{prefix}.{index}" if prefix else str(index)
                for sub_path, messages in flatten_validation_errors(value, path).items():
                    flat.setdefault(sub_path, []).extend(messages)
    else:
        flat.setdefault(prefix or "non_field_errors", []).append(
            _field_message(prefix, str(detail))
        )
    return flat


def exception_handler(exc, context):
    """DRF's exception handler: every exception becomes the seed-000 error body."""
    headers = {}
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None) is not None:
            headers["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
        if isinstance(exc, exceptions.ValidationError):
            errors = flatten_validation_errors(exc.detail)
            messages = [message for field_messages in errors.values() for message in field_messages]
            payload = error_payload(exc.status_code, messages, errors=errors)
        else:
            detail = exc.detail
            if isinstance(detail, dict | list):
                errors = flatten_validation_errors(detail)
                messages = [m for field_messages in errors.values() for m in field_messages]
                payload = error_payload(exc.status_code, messages, errors=errors)
            else:
                payload = error_payload(
                    exc.status_code, [str(detail)], title=getattr(exc, "title", None)
                )
            payload.update(getattr(exc, "extra", None) or {})
        set_rollback()
        return Response(payload, status=exc.status_code, headers=headers)

    view = context.get("view")
    logger.exception("Unhandled error in %s", type(view).__name__ if view else "API view")
    set_rollback()
    return Response(
        error_payload(
            status.HTTP_500_INTERNAL_SERVER_ERROR,
            ["An unexpected error occurred. It has been logged; please retry later."],
        ),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


class PaymentRequired(exceptions.APIException):
    """402 with extra top-level fields (`failure_reason`) beside the error body."""

    status_code = status.HTTP_402_PAYMENT_REQUIRED
    default_detail = "The payment failed."
    default_code = "payment_required"

    def __init__(self, detail=None, *, extra: dict | None = None):
        super().__init__(detail)
        self.extra = extra or {}


class QuotaExceeded(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "Quota exceeded."
    default_code = "quota_exceeded"
    title = "Quota Exceeded"


# --- Plain Django handlers (routes DRF never sees) -----------------------------------------------


def not_found_view(request, exception=None, **kwargs):
    return error_response(404, [f"Cannot {request.method} {request.path}"])


def server_error_view(request):
    return error_response(500, ["An unexpected error occurred. It has been logged."])


def bad_request_view(request, exception=None):
    return error_response(400, ["Bad request."])


def permission_denied_view(request, exception=None):
    return error_response(403, ["Forbidden."])
