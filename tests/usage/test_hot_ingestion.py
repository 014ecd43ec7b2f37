"""POST /events on its hot path (tenants.api.hot.hot_post) answers as the DRF view does, and is
really taken once the key is cached: same status, body and headers for new events, duplicates
and every kind of refusal; one rate-limit bucket for both paths."""

import datetime as dt

import pytest
from django.test import override_settings

from tests.openapi import assert_error_body, assert_matches_schema
from tests.usage.conftest import NOW
from tests.usage.factories import event
from tests.utils import postgresql_only
from usage.api import views
from usage.models import UsageEvent

pytestmark = [pytest.mark.django_db, postgresql_only]

COMPARED_HEADERS = ("Content-Type", "Allow", "Retry-After")


@pytest.fixture
def drf_calls(monkeypatch):
    """How many requests reached the DRF view (a spy: the view still runs)."""
    calls = []
    original = views.EventViewSet.initial

    def initial(self, request, *args, **kwargs):
        calls.append(request.method)
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(views.EventViewSet, "initial", initial)
    return calls


@pytest.fixture
def warm_api(api):
    """A client whose key DRF has resolved and cached (what the hot path reads)."""
    assert api.get("/api/v1/customers").status_code == 200
    return api


def _post(client, body, *, hot: bool):
    with override_settings(HOT_PATHS=hot):
        if isinstance(body, bytes):
            return client.post("/api/v1/events", body, content_type="application/json")
        return client.post("/api/v1/events", body, format="json")


def _same(hot, drf) -> None:
    assert hot.status_code == drf.status_code
    assert hot.content == drf.content
    for header in COMPARED_HEADERS:
        assert hot.get(header) == drf.get(header), header


def test_a_new_event_and_its_repeat_take_the_hot_path(warm_api, subscription, calls, drf_calls):
    body = event(subscription, "api_calls", 2.5, event_id="hot-1", properties={"region": "eu"})
    created = _post(warm_api, body, hot=True)
    assert created.status_code == 201, created.content
    assert_matches_schema(created, "post", "/api/v1/events")
    assert created.json()["value"] == "2.5"
    assert created.json()["subscription"] == str(subscription.pk)
    assert created["Allow"] == "GET, POST, HEAD, OPTIONS"
    assert drf_calls == []

    repeat_hot = _post(warm_api, {**body, "value": 9}, hot=True)
    repeat_drf = _post(warm_api, {**body, "value": 9}, hot=False)
    _same(repeat_hot, repeat_drf)
    assert repeat_hot.status_code == 200
    assert repeat_hot.json() == created.json()
    assert drf_calls == ["POST"]  # only the request sent with HOT_PATHS off
    assert UsageEvent.objects.filter(event_id="hot-1").count() == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        {"event_id": "x-1", "code": "unknown_metric", "subscription": "SUB"},
        {"event_id": "x-2", "code": "api_calls"},
        {"event_id": "x-3", "code": "api_calls", "subscription": "SUB", "timestamp": "nope"},
        {"event_id": "x-4", "code": "api_calls", "subscription": "SUB", "value": "many"},
        {
            "event_id": "x-5",
            "code": "api_calls",
            "subscription": "SUB",
            "timestamp": (NOW - dt.timedelta(days=36)).isoformat(),
        },
    ],
)
def test_refusals_are_the_same_400(warm_api, subscription, calls, drf_calls, body):
    if isinstance(body, dict) and body.get("subscription") == "SUB":
        body = {**body, "subscription": str(subscription.pk)}
    hot = _post(warm_api, body, hot=True)
    drf = _post(warm_api, body, hot=False)
    _same(hot, drf)
    assert_error_body(hot, 400)
    assert drf_calls == ["POST"]
    assert not UsageEvent.objects.exists()


@override_settings(BILLING={"INGEST_RATE_LIMIT": "2/m", "RATE_LIMIT": "100/m"})
def test_the_hot_path_counts_in_the_ingest_bucket(warm_api, subscription, calls, drf_calls):
    assert _post(warm_api, event(subscription, "api_calls", 1), hot=True).status_code == 201
    assert _post(warm_api, event(subscription, "api_calls", 1), hot=False).status_code == 201
    limited = _post(warm_api, event(subscription, "api_calls", 1), hot=True)
    body = assert_error_body(limited, 429)
    assert body["error"] == "Too Many Requests"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert UsageEvent.objects.count() == 2


def test_a_cold_or_revoked_key_goes_through_drf(api, api_key, subscription, calls, drf_calls):
    # Nothing cached yet: DRF authenticates (and caches) the key.
    assert _post(api, event(subscription, "api_calls", 1), hot=True).status_code == 201
    assert drf_calls == ["POST"]
    assert _post(api, event(subscription, "api_calls", 1), hot=True).status_code == 201
    assert drf_calls == ["POST"]

    from tenants.models import ApiKey, hash_api_key
    from tenants.services import api_key_revoke

    api_key_revoke(api_key=ApiKey.objects.get(key_hash=hash_api_key(api_key)))
    refused = _post(api, event(subscription, "api_calls", 1), hot=True)
    assert_error_body(refused, 403)
    assert UsageEvent.objects.count() == 2
