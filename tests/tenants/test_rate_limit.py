"""Rate limits per API key (API.md, Conventions, Rate limiting): over the limit 429 with the error
body and `Retry-After`; the next window is open again; another key is counted on its own."""

import datetime as dt

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from customers.models import Customer
from tests.factories import make_api_key
from tests.openapi import assert_error_body, assert_matches_schema

pytestmark = pytest.mark.django_db

LIMITED = override_settings(BILLING={"RATE_LIMIT": "3/m"})


def _client(clear_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_BILLING_API_KEY=clear_key)
    return client


@LIMITED
def test_fourth_request_in_a_minute_is_429_and_the_next_window_recovers(api):
    # Start just after a whole minute so the limit's window cannot roll over mid-test.
    start = timezone.now().replace(second=0, microsecond=0) + dt.timedelta(minutes=1, seconds=1)
    with time_machine.travel(start, tick=False) as traveller:
        for _ in range(3):
            assert api.get("/api/v1/customers").status_code == 200

        response = api.get("/api/v1/customers")

        body = assert_error_body(response, 429)
        assert body["error"] == "Too Many Requests"
        assert_matches_schema(response, "get", "/api/v1/customers")
        retry_after = int(response["Retry-After"])
        assert 1 <= retry_after <= 60

        # Retry-After is exact: a second earlier is still limited, at it the key is let through.
        traveller.shift(dt.timedelta(seconds=retry_after - 1))
        assert api.get("/api/v1/customers").status_code == 429
        traveller.shift(dt.timedelta(seconds=1))
        assert api.get("/api/v1/customers").status_code == 200


@LIMITED
def test_a_limited_write_changes_nothing(api):
    with time_machine.travel(timezone.now(), tick=False):
        for _ in range(3):
            api.get("/api/v1/customers")
        response = api.post("/api/v1/customers", {"email": "late@example.com"}, format="json")
    assert_error_body(response, 429)
    assert "Retry-After" in response
    assert not Customer.objects.exists()


@LIMITED
def test_limits_are_counted_per_key(api, tenant):
    second_key_of_same_tenant = _client(make_api_key(tenant, name="second"))
    with time_machine.travel(timezone.now(), tick=False):
        for _ in range(3):
            api.get("/api/v1/customers")
        assert api.get("/api/v1/customers").status_code == 429

        assert second_key_of_same_tenant.get("/api/v1/customers").status_code == 200


@override_settings(BILLING={"RATE_LIMIT": "2/m"})
def test_limit_is_a_setting(api):
    with time_machine.travel(timezone.now(), tick=False):
        assert [api.get("/api/v1/customers").status_code for _ in range(3)] == [200, 200, 429]


@LIMITED
def test_requests_without_a_valid_key_are_refused_before_counting(api, anonymous_api):
    with time_machine.travel(timezone.now(), tick=False):
        for _ in range(5):
            assert anonymous_api.get("/api/v1/customers").status_code == 403
        assert [api.get("/api/v1/customers").status_code for _ in range(3)] == [200, 200, 200]
