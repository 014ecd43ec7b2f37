"""Usage reports of a namespace: current usage with amounts, details whose hourly breakdowns add
up exactly, monthly usage, the tenant-wide summary, and the usage plans."""

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.openapi import assert_error_body, assert_matches_schema
from tests.quotas.conftest import ANCHOR, NOW, plan_limit
from tests.usage.factories import add_metered_item, event, ingest

pytestmark = pytest.mark.django_db


def _post(api, namespace, path, body=None):
    return api.post(f"/api/v1/namespaces/{namespace.name}/{path}", body or {}, format="json")


def _spread(tenant, subscription, values):
    """Events a few minutes apart over several hours, starting inside the billing period's
    first (partial) hour."""
    at = ANCHOR + dt.timedelta(minutes=5)
    for index, value in enumerate(values):
        ingest(
            tenant,
            event(subscription, "api_calls", value, at=at + dt.timedelta(minutes=37 * index)),
        )


def test_current_usage_with_amounts(api, tenant, namespace, subscription, calls, vms):
    add_metered_item(subscription, calls, amount=2)  # 2 cents per call
    _spread(tenant, subscription, [1, 2, 3.5])
    response = _post(api, namespace, "current_usage")
    assert response.status_code == 200, response.content
    assert_matches_schema(response, "post", "/api/v1/namespaces/{ns}/current_usage")
    body = response.json()
    metered = {item["usage_type"]: item for item in body["items"] if not item["fixed"]}
    assert metered["api_calls"]["quantity"] == "6.5"
    assert metered["api_calls"]["amount"] == 13
    assert metered["api_calls"]["status"] == "ACTIVE"
    assert metered["api_calls"]["start_timestamp"] == "2026-03-01T10:30:00Z"
    fixed = [item for item in body["items"] if item["fixed"]]
    assert [item["amount"] for item in fixed] == [1000]
    assert body["total_cost"] == 1013
    assert body["currency_code"] == "EUR"
    bad = _post(
        api,
        namespace,
        "current_usage",
        {"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
    )
    assert_error_body(bad, 400, errors=True)


def test_hourly_items_add_up_to_their_detail(api, tenant, namespace, subscription, calls):
    _spread(tenant, subscription, [1, 2.25, 3, 0.5, 4, 7, 1.125])
    window = {"from": "2026-03-01T10:45:00Z", "to": "2026-03-01T14:20:00Z"}
    details = _post(api, namespace, "usage_details", window)
    assert details.status_code == 200
    assert_matches_schema(details, "post", "/api/v1/namespaces/{ns}/usage_details")
    [detail] = details.json()["items"]
    hourly = _post(
        api, namespace, "hourly_usage_details", {"query": detail["hourly_breakdown_query"]}
    )
    assert hourly.status_code == 200
    assert_matches_schema(hourly, "post", "/api/v1/namespaces/{ns}/hourly_usage_details")
    items = hourly.json()["items"]
    assert sum(Decimal(item["quantity"]) for item in items) == Decimal(detail["quantity"])
    # 10:35 is before the window; 11:12, 11:49, 12:26, 13:03, 13:40 and 14:17 are in it.
    assert Decimal(detail["quantity"]) == Decimal("17.875")
    assert items[0]["start_timestamp"] == "2026-03-01T11:00:00Z"
    assert items[-1]["end_timestamp"] == "2026-03-01T14:20:00Z"

    assert_error_body(_post(api, namespace, "hourly_usage_details", {"query": "forged"}), 400)


@pytest.fixture
def spread_events(tenant, subscription, calls):
    _spread(tenant, subscription, [Decimal("1.5"), 2, Decimal("0.125"), 9, 4, 3, 1, 2, 5, 8, 1])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start_offset=st.integers(min_value=-90, max_value=400),
    length=st.integers(min_value=1, max_value=600),
)
def test_hourly_items_always_add_up_to_the_events_of_the_window(
    namespace, spread_events, start_offset, length
):
    from quotas import selectors
    from subscriptions.models import Metric
    from usage.models import UsageEvent

    metric = Metric.objects.get(tenant=namespace.tenant, code="api_calls")
    start = ANCHOR + dt.timedelta(minutes=start_offset)
    end = start + dt.timedelta(minutes=length)
    items = selectors.hourly_usage(namespace, metric, start, end)
    events = UsageEvent.objects.filter(namespace=namespace, timestamp__gte=start, timestamp__lt=end)
    assert sum((item.quantity for item in items), Decimal(0)) == sum(
        (e.value for e in events), Decimal(0)
    )
    assert all(start <= item.start < item.end <= end for item in items)


def test_monthly_usage_and_the_tenant_summary(api, tenant, namespace, subscription, calls):
    _spread(tenant, subscription, [1, 2])
    monthly = _post(api, namespace, "monthly_usage")
    assert monthly.status_code == 200
    assert_matches_schema(monthly, "post", "/api/v1/namespaces/{ns}/monthly_usage")
    assert monthly.json()["items"] == [
        {
            "usage_type": "api_calls",
            "quantity": "3",
            "unit_name": "units",
            "start_timestamp": "2026-03-01T00:00:00Z",
            "end_timestamp": "2026-04-01T00:00:00Z",
        }
    ]
    summary = api.post(
        "/api/v1/usage_summary",
        {"start_time": "2026-03-01T00:00:00Z", "end_time": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")},
        format="json",
    )
    assert summary.status_code == 200
    assert_matches_schema(summary, "post", "/api/v1/usage_summary")
    assert summary.json()["items"] == [
        {
            "namespace": namespace.name,
            "customer": str(namespace.customer_id),
            "usage_type": "api_calls",
            "quantity": "3",
            "unit_name": "units",
        }
    ]
    assert_error_body(api.post("/api/v1/usage_summary", {}, format="json"), 400, errors=True)


def test_usage_plans_and_the_current_plan(api, other_api, namespace, subscription, calls, vms):
    plan_limit(subscription.plan, "api_calls", 1000)
    plan_limit(subscription.plan, "vms", 5)
    plans = api.get("/api/v1/usage_plans")
    assert plans.status_code == 200
    assert_matches_schema(plans, "get", "/api/v1/usage_plans")
    [plan] = plans.json()["items"]
    assert plan["code_name"] == subscription.plan.code_name
    assert plan["default_quotas"] == {
        "object_limits": {"vms": {"maximum": 5}},
        "resource_limits": {"api_calls": {"maximum": 1000}},
        "api_limits": {},
    }
    assert other_api.get("/api/v1/usage_plans").json()["items"] == []

    current = api.get(f"/api/v1/namespaces/{namespace.name}/usage_plans/current")
    assert current.status_code == 200
    assert_matches_schema(current, "get", "/api/v1/namespaces/{ns}/usage_plans/current")
    assert current.json() == plan
