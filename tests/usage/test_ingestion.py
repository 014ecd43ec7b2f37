import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.db.models import Sum

from customers.services import customer_disable
from tenants.api.errors import QuotaExceeded
from tests.openapi import assert_error_body, assert_matches_schema
from tests.usage.conftest import ANCHOR, NOW
from tests.usage.factories import add_metered_item, event, make_metric, make_subscription
from tests.utils import postgresql_only
from usage import services
from usage.models import UsageEvent, UsageRollup
from usage.selectors import customer_cost_estimate

pytestmark = pytest.mark.django_db


def _counted(code="api_calls") -> tuple[int, Decimal]:
    totals = UsageRollup.objects.filter(code=code).aggregate(
        n=Sum("event_count"), s=Sum("value_sum")
    )
    return totals["n"] or 0, totals["s"] or Decimal(0)


def test_a_single_event_is_stored_once_and_its_repeat_answers_the_original(
    api, subscription, calls
):
    body = event(subscription, "api_calls", 2.5, event_id="evt-1", properties={"region": "eu"})
    first = api.post("/api/v1/events", body, format="json")
    assert first.status_code == 201, first.content
    assert_matches_schema(first, "post", "/api/v1/events")
    assert first.json()["value"] == "2.5"
    assert first.json()["namespace"] == subscription.customer.default_namespace.name

    again = api.post("/api/v1/events", {**body, "value": 99}, format="json")
    assert again.status_code == 200
    assert_matches_schema(again, "post", "/api/v1/events")
    assert again.json() == first.json()
    assert UsageEvent.objects.count() == 1
    assert _counted() == (1, Decimal("2.5"))


def test_a_repeated_batch_counts_nothing_twice(api, subscription, calls):
    events = [event(subscription, "api_calls", 1, event_id=f"b-{i}") for i in range(5)]
    events.append(dict(events[0]))  # a duplicate inside the batch itself
    first = api.post("/api/v1/events/batch", {"events": events}, format="json")
    assert first.status_code == 200, first.content
    assert_matches_schema(first, "post", "/api/v1/events/batch")
    assert first.json() == {"accepted": 5, "duplicates": 1}
    second = api.post("/api/v1/events/batch", {"events": events}, format="json")
    assert second.json() == {"accepted": 0, "duplicates": 6}
    assert UsageEvent.objects.count() == 5
    assert _counted() == (5, Decimal(5))


def test_one_bad_event_rejects_the_whole_batch(api, subscription, calls):
    events = [event(subscription, "api_calls", 1) for _ in range(3)]
    events.insert(2, event(subscription, "no_such_metric", 1))
    events.append({"code": "api_calls", "subscription": str(subscription.pk), "value": "x"})
    response = api.post("/api/v1/events/batch", {"events": events}, format="json")
    body = assert_error_body(response, 400, errors=True)
    assert set(body["errors"]) == {"events.4.event_id", "events.4.value"}
    # Field errors first; the references of a well-formed batch are checked next.
    events.pop()
    response = api.post("/api/v1/events/batch", {"events": events}, format="json")
    body = assert_error_body(response, 400, errors=True)
    assert body["errors"] == {"events.2.code": ["code 'no_such_metric' is not a known metric"]}
    assert UsageEvent.objects.count() == 0
    assert UsageRollup.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"timestamp": (NOW - dt.timedelta(days=36)).isoformat()}, "timestamp", "35 days old"),
        ({"timestamp": (NOW + dt.timedelta(minutes=6)).isoformat()}, "timestamp", "5 minutes"),
        ({"timestamp": "yesterday"}, "timestamp", "RFC 3339"),
        ({"code": "nope"}, "code", "is not a known metric"),
        ({"value": None}, "value", "value should not be empty"),
        ({"customer": "cust-unknown"}, "customer", "was not found"),
        ({"namespace": "nowhere"}, "namespace", "was not found"),
    ],
)
def test_invalid_events_answer_400_naming_the_reason(
    api, subscription, calls, change, field, message
):
    body = {**event(subscription, "api_calls", 1), **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = api.post("/api/v1/events", body, format="json")
    errors = assert_error_body(response, 400, errors=True)["errors"]
    assert message in errors[field][0], errors


def test_the_timestamp_window_is_inclusive_of_its_edges(api, subscription, calls):
    for at in (NOW - dt.timedelta(days=35), NOW + dt.timedelta(minutes=5)):
        body = event(subscription, "api_calls", 1, at=at)
        assert api.post("/api/v1/events", body, format="json").status_code == 201


def test_events_of_a_disabled_customer_or_a_stopped_subscription_are_refused(
    api, tenant, customer, subscription, calls
):
    cancelled = make_subscription(customer, anchor=ANCHOR, status="cancelled")
    response = api.post("/api/v1/events", event(cancelled, "api_calls", 1), format="json")
    errors = assert_error_body(response, 400)["errors"]
    assert "is not billing (it is cancelled)" in errors["subscription"][0]

    customer_disable(customer=customer)
    response = api.post("/api/v1/events", event(subscription, "api_calls", 1), format="json")
    assert "is disabled" in assert_error_body(response, 400)["errors"]["customer"][0]


def test_an_event_by_customer_reference_is_billed_to_its_metered_subscription(
    api, tenant, customer, subscription, calls
):
    other = make_subscription(customer, anchor=ANCHOR)  # newer, but without the metric
    add_metered_item(subscription, calls, amount=2)
    body = {"event_id": "by-ref", "customer": "cust-metered", "code": "api_calls", "value": 3}
    response = api.post("/api/v1/events", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["subscription"] == str(subscription.pk)
    assert other.pk != subscription.pk


def test_batch_size_is_bounded(api, subscription, calls):
    assert_error_body(api.post("/api/v1/events/batch", {"events": []}, format="json"), 400)
    events = [event(subscription, "api_calls", 1) for _ in range(1001)]
    response = api.post("/api/v1/events/batch", {"events": events}, format="json")
    assert assert_error_body(response, 400)["errors"] == {
        "events": ["events must contain at most 1000 events"]
    }
    response = api.post("/api/v1/events/batch", data=b"{not json", content_type="application/json")
    assert_error_body(response, 400)


def test_ingestion_guards_can_refuse_a_request_and_nothing_is_stored(api, subscription, calls):
    seen = []

    def quota_guard(tenant, namespace_rows, events):
        seen.append((set(namespace_rows), [e.event_id for e in events]))
        if any(e.value > 10 for e in events):
            raise QuotaExceeded("api_calls would exceed its quota")

    services.INGESTION_GUARDS.append(quota_guard)
    try:
        ok = api.post(
            "/api/v1/events", event(subscription, "api_calls", 1, event_id="a"), format="json"
        )
        assert ok.status_code == 201
        refused = api.post(
            "/api/v1/events/batch",
            {"events": [event(subscription, "api_calls", 1), event(subscription, "api_calls", 11)]},
            format="json",
        )
    finally:
        services.INGESTION_GUARDS.remove(quota_guard)
    body = assert_error_body(refused, 429)
    assert body["error"] == "Quota Exceeded"
    assert UsageEvent.objects.count() == 1
    assert _counted() == (1, Decimal(1))
    namespace_id = subscription.customer.default_namespace_id
    assert seen[0] == ({namespace_id}, ["a"])


def test_event_list_filters_and_constant_queries(
    api, subscription, calls, django_assert_max_num_queries
):
    storage = make_metric(subscription.tenant, "storage", "max")
    services.events_ingest(
        tenant=subscription.tenant,
        events=[
            event(subscription, "api_calls", 1, at=NOW - dt.timedelta(hours=h)) for h in range(8)
        ]
        + [event(subscription, "storage", 5)],
        batch=True,
    )
    response = api.get("/api/v1/events", {"code": "api_calls", "limit": 100})
    assert_matches_schema(response, "get", "/api/v1/events")
    assert len(response.json()["data"]) == 8
    since = (NOW - dt.timedelta(hours=3, minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = api.get("/api/v1/events", {"code": "api_calls", "from": since})
    assert len(response.json()["data"]) == 4
    assert api.get("/api/v1/events", {"code": storage.code}).json()["data"][0]["value"] == "5"
    with django_assert_max_num_queries(4):
        api.get("/api/v1/events", {"limit": 100})


def test_events_of_other_tenants_are_invisible(api, other_api, subscription, calls):
    api.post("/api/v1/events", event(subscription, "api_calls", 1), format="json")
    assert other_api.get("/api/v1/events").json()["data"] == []
    response = other_api.post("/api/v1/events", event(subscription, "api_calls", 1), format="json")
    assert_error_body(response, 400)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_two_clients_racing_the_same_batch_count_it_once(tenant, clock):
    from tests.usage.factories import make_customer

    customer = make_customer(tenant)
    subscription = make_subscription(customer, anchor=ANCHOR)
    metric = make_metric(tenant, "api_calls", "sum")
    add_metered_item(subscription, metric, amount=1)
    events = [event(subscription, "api_calls", 1, event_id=f"race-{i}") for i in range(500)]
    results, failures = [], []
    barrier = threading.Barrier(4)

    def client():
        try:
            barrier.wait()
            results.append(services.events_ingest(tenant=tenant, events=events, batch=True))
        except Exception as error:  # reported by the assertion below
            failures.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert sorted(r.accepted for r in results) == [0, 0, 0, 500]
    assert sum(r.duplicates for r in results) == 1500
    assert UsageEvent.objects.count() == 500
    assert _counted() == (500, Decimal(500))
    assert customer_cost_estimate(customer=customer).total == 500
    assert connection.vendor == "postgresql"


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_racing_single_duplicates_count_once(tenant, clock):
    from tests.usage.factories import make_customer

    customer = make_customer(tenant)
    subscription = make_subscription(customer, anchor=ANCHOR)
    make_metric(tenant, "api_calls", "count")
    body = event(subscription, "api_calls", event_id="same")
    barrier = threading.Barrier(6)
    accepted = []

    def client():
        try:
            barrier.wait()
            accepted.append(
                services.events_ingest(tenant=tenant, events=[body], batch=False).accepted
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(accepted) == [0, 0, 0, 0, 0, 1]
    assert _counted() == (1, Decimal(0))


def test_a_retried_single_event_is_answered_with_the_original_even_if_now_refused(
    api, subscription, calls
):
    body = event(subscription, "api_calls", 3, event_id="evt-retry")
    first = api.post("/api/v1/events", body, format="json")
    assert first.status_code == 201
    # The retry's timestamp is out of the window now, and its metric unknown: still the original.
    retry = {**body, "timestamp": "1999-01-01T00:00:00Z", "code": "gone"}
    again = api.post("/api/v1/events", retry, format="json")
    assert again.status_code == 200
    assert again.json() == first.json()
    # A new event with the same faults is refused.
    fresh = api.post("/api/v1/events", {**retry, "event_id": "evt-new"}, format="json")
    body = assert_error_body(fresh, 400)
    assert body["errors"]["timestamp"] == ["timestamp must be at most 35 days old"]
    assert _counted() == (1, Decimal(3))
