"""Rate limits per API key, counted by django-ratelimit in the cache (Redis in production).
A view picks its limit with `rate_limit_scope` ("default" or "ingest")."""

from django_ratelimit.core import get_usage
from rest_framework.throttling import BaseThrottle

from billing_project.conf import billing_settings

SCOPE_SETTINGS = {"default": "RATE_LIMIT", "ingest": "INGEST_RATE_LIMIT"}


def rate_limit_group(scope: str) -> str:
    return f"api:{scope}"


def rate_limit_value(key_hash: str) -> str:
    """What a key is counted under: its hash, which the hot paths (tenants.api.hot) know before
    they have read the key itself."""
    return key_hash


def _api_key_value(group, request) -> str:
    return rate_limit_value(request.auth.key_hash)


class ApiKeyRateThrottle(BaseThrottle):
    def __init__(self):
        self._wait = None

    def allow_request(self, request, view) -> bool:
        if request.auth is None:
            return True
        scope = getattr(view, "rate_limit_scope", "default")
        usage = get_usage(
            request,
            group=rate_limit_group(scope),
            key=_api_key_value,
            rate=getattr(billing_settings, SCOPE_SETTINGS[scope]),
            increment=True,
        )
        if usage is None or not usage["should_limit"]:
            return True
        # django-ratelimit's window still counts at its last second (`time_left` 0), so the
        # first instant a retry is let through is one second after it.
        self._wait = max(usage["time_left"], 0) + 1
        return False

    def wait(self):
        return self._wait
