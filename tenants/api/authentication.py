"""API-key authentication (seed 000): `X-BILLING-API-KEY` header or `?api_key=` query parameter.
Without `authenticate_header`, DRF answers a missing or bad key with 403, as the contract says."""

from rest_framework import authentication, exceptions

from tenants.selectors import api_key_for_clear_key
from tenants.services import api_key_touch

API_KEY_HEADER = "HTTP_X_BILLING_API_KEY"
API_KEY_QUERY_PARAM = "api_key"


class ApiClient:
    """The caller behind an API key: what `request.user` is on API requests."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, api_key):
        self.api_key = api_key
        self.tenant = api_key.tenant
        self.pk = None

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        clear_key = request.META.get(API_KEY_HEADER) or request.query_params.get(
            API_KEY_QUERY_PARAM
        )
        if not clear_key:
            return None
        api_key = api_key_for_clear_key(clear_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        api_key_touch(api_key=api_key)
        return ApiClient(api_key), api_key
