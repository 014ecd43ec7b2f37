import datetime as dt
import threading
import time

import pytest
import time_machine
from django.db import connection, connections
from django.db.models import Sum

from quotas.models import QuotaExceedance
from tenants.api.errors import QuotaExceeded
from tests.openapi import assert_error_body
from tests.quotas.conftest import ANCHOR, NOW, plan_limit, quota
from tests.usage.factories import event, ingest, make_customer, make_metric, make_subscription
from tests.utils import postgresql_only
from usage.models import UsageEvent, UsageRollup
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def _stored(code="api_calls"):
    return UsageRollup.objects.filter(code=code).aggregate(s=Sum("value_sum"))["s"] or 0


def test_the_event_that_reaches_the_maximum_is_accepted_and_the_next_refused(
    api, namespace, subscription, calls
):
    quota(namespace, resource_limits={"api_calls": {"maximum": 10}})
    for value in (4, 6):
        accepted = api.post(
            "/api/v1/events", event(subscription, "api_calls", value), format="json"
        )
        assert accepted.status_code == 201, accepted.content
    refused = api.post("/api/v1/events", event(subscription, "api_calls", 1), format="json")
    body = assert_error_body(refused, 429)
    assert body["error"] == "Quota Exceeded"
    assert "api_calls" in body["message"][0]
    assert UsageEvent.objects.count() == 2
    assert _stored() == 10


def test_a_batch_over_the_maximum_stores_nothing(api, namespace, subscription, calls):
    quota(namespace, resource_limits={"api_calls": {"maximum": 10}})
    events = [event(subscription, "api_calls", 1) for _ in range(11)]
    refused = api.post("/api/v1/events/batch", {"events": events}, format="json")
    assert_error_body(refused, 429)
    assert UsageEvent.objects.count() == 0
    assert _stored() == 0
    exactly = api.post("/api/v1/events/batch", {"events": events[:10]}, format="json")
    assert exactly.status_code == 200
    assert exactly.json() == {"accepted": 10, "duplicates": 0}


def test_a_disabled_quota_does_not_bind_and_plan_defaults_do(
    tenant, namespace, subscription, calls
):
    quota(namespace, disable=True, resource_limits={"api_calls": {"maximum": 1}})
    ingest(tenant, event(subscription, "api_calls", 5))
    plan_limit(subscription.plan, "api_calls", 6)
    ingest(tenant, event(subscription, "api_calls", 1))
    with pytest.raises(QuotaExceeded):
        ingest(tenant, event(subscription, "api_calls", 1))
    assert _stored() == 6


def test_object_limits_bound_the_gauge_now(tenant, namespace, subscription, vms):
    quota(namespace, object_limits={"vms": {"maximum": 3}})
    ingest(tenant, event(subscription, "vms", 3))
    ingest(tenant, event(subscription, "vms", 1))  # down to 1 machine
    ingest(tenant, event(subscription, "vms", 3))
    with pytest.raises(QuotaExceeded):
        ingest(tenant, event(subscription, "vms", 4))


def test_a_new_period_starts_from_zero(tenant, namespace, subscription, calls):
    quota(namespace, resource_limits={"api_calls": {"maximum": 5}})
    ingest(tenant, event(subscription, "api_calls", 5))
    with pytest.raises(QuotaExceeded):
        ingest(tenant, event(subscription, "api_calls", 1))
    # Events of another namespace do not count here.
    other = make_customer(tenant, email="other@example.com")
    ingest(tenant, event(make_subscription(other, anchor=ANCHOR), "api_calls", 50))


def test_quota_exceeded_is_announced_once_per_period(tenant, namespace, subscription, calls):
    quota(namespace, resource_limits={"api_calls": {"maximum": 1}})
    ingest(tenant, event(subscription, "api_calls", 1))
    for _ in range(3):
        with pytest.raises(QuotaExceeded):
            ingest(tenant, event(subscription, "api_calls", 1))
    announced = WebhookEvent.objects.filter(type="quota.exceeded")
    assert announced.count() == 1
    data = announced.get().data
    assert data["namespace"] == namespace.name
    assert data["metric"] == "api_calls"
    assert data["kind"] == "resource_limits"
    assert data["maximum"] == 1
    assert data["attempted"] == "2"
    assert QuotaExceedance.objects.get().period_start == ANCHOR.replace(minute=0)


def test_api_limits_bound_the_event_rate(api, namespace, subscription, calls):
    quota(namespace, api_limits={"api_calls": {"rate": 2, "burst": 3, "unit": "per-second"}})
    with time_machine.travel(NOW, tick=False):
        sent = [
            api.post("/api/v1/events", event(subscription, "api_calls", 1), format="json")
            for _ in range(4)
        ]
        assert [r.status_code for r in sent] == [201, 201, 201, 429]
        assert_error_body(sent[3], 429)
        assert int(sent[3]["Retry-After"]) >= 1
    with time_machine.travel(NOW + dt.timedelta(seconds=1), tick=False):
        later = [
            api.post("/api/v1/events", event(subscription, "api_calls", 1), format="json")
            for _ in range(3)
        ]
        assert [r.status_code for r in later] == [201, 201, 429]
    assert UsageEvent.objects.count() == 5


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_clients_never_exceed_the_maximum(tenant, monkeypatch):
    from quotas import selectors as quota_selectors

    read_usage = quota_selectors.period_aggregates

    def slow_read(*args, **kwargs):
        # Widen the gap between reading the usage and committing, so that without the quota's
        # lock the two clients would both read stale usage and go over the maximum.
        answer = read_usage(*args, **kwargs)
        time.sleep(0.02)
        return answer

    monkeypatch.setattr(quota_selectors, "period_aggregates", slow_read)
    with time_machine.travel(NOW, tick=False):
        customer = make_customer(tenant, email="race@example.com")
        subscription = make_subscription(customer, anchor=ANCHOR)
        make_metric(tenant, "api_calls", "sum")
        quota(customer.default_namespace, resource_limits={"api_calls": {"maximum": 100}})
    accepted, refused, failures = [], [], []
    barrier = threading.Barrier(2)

    def client(number):
        try:
            barrier.wait()
            for batch in range(15):
                # Each client writes its own hour: no shared rollup row serialises them, only
                # the quota's lock does.
                events = [
                    event(
                        subscription,
                        "api_calls",
                        1,
                        event_id=f"c{number}-{batch}-{i}",
                        at=NOW - dt.timedelta(hours=number + 1),
                    )
                    for i in range(5)
                ]
                try:
                    with time_machine.travel(NOW, tick=False):
                        result = ingest(tenant, *events)
                    accepted.append(result.accepted)
                except QuotaExceeded:
                    refused.append(number)
        except Exception as error:  # reported by the assertion below
            failures.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sum(accepted) == 100
    assert len(refused) == 10  # 150 events offered in batches of 5: 20 fit, 10 are refused
    assert UsageEvent.objects.count() == 100
    assert _stored() == 100
    assert connection.vendor == "postgresql"
