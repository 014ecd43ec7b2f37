"""OpenAPI pieces shared by every endpoint: the API-key security schemes and the error body."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.api.authentication.ApiKeyAuthentication"
    name = ["ApiKeyHeader", "ApiKeyQuery"]

    def get_security_definition(self, auto_schema):
        return [
            {"type": "apiKey", "in": "header", "name": "X-BILLING-API-KEY"},
            {"type": "apiKey", "in": "query", "name": "api_key"},
        ]

    def get_security_requirement(self, auto_schema):
        # Either the header or the query parameter (OR); one dict with both names would mean AND.
        return [{name: []} for name in self.name]


_internal_error = inline_serializer(
    name="InternalError",
    fields={
        "statusCode": serializers.IntegerField(),
        "message": serializers.ListField(child=serializers.CharField()),
        "error": serializers.CharField(),
    },
)

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "statusCode": serializers.IntegerField(),
        "message": serializers.ListField(child=serializers.CharField()),
        "error": serializers.CharField(),
        "internalError": _internal_error,
        "errors": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()), required=False
        ),
    },
)


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """The error answers specific to an operation (400, 404, 409...), all in the one error shape.
    The answers every authenticated operation can give are added by `add_common_error_responses`."""
    return {code: OpenApiResponse(ErrorSerializer) for code in codes}


_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_WRITE_METHODS = {"post", "put", "patch", "delete"}


def _error_response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def add_common_error_responses(result, generator, request, public):
    """drf-spectacular post-processing hook: document on every authenticated operation the answers
    the conventions give whatever the view (API.md, Conventions), and the `Idempotency-Key` header
    on writes, so that views only list their own errors."""
    if "Error" not in result.get("components", {}).get("schemas", {}):
        return result  # no operation uses the error shape, so no operation is authenticated
    for path_item in result["paths"].values():
        for method, operation in path_item.items():
            if not operation.get("security"):
                continue
            responses = operation["responses"]
            responses.setdefault("403", _error_response("Missing, unknown, revoked or expired key"))
            responses.setdefault("429", _error_response("Rate limited; see Retry-After"))
            responses.setdefault("500", _error_response("Unexpected error"))
            if method not in _WRITE_METHODS:
                continue
            responses.setdefault("400", _error_response("Invalid request"))
            responses.setdefault("409", _error_response("Idempotency-Key conflict"))
            responses.setdefault("413", _error_response("Request body too large"))
            operation.setdefault("parameters", []).append(
                {
                    "in": "header",
                    "name": "Idempotency-Key",
                    "required": False,
                    "description": "Retries with the same key and body replay the first answer "
                    "(with `Idempotent-Replayed: true`); a different body answers 409.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                }
            )
    return result


def error_with(name: str, **extra_fields):
    """The error body with extra top-level fields beside it (a 402's `failure_reason`), for the
    schema of answers raised with `PaymentRequired(extra=...)`."""
    return type(name, (type(ErrorSerializer),), dict(extra_fields))
