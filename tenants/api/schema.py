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
    """The error answers an operation documents, all in the one error shape."""
    return {code: OpenApiResponse(ErrorSerializer) for code in codes}
