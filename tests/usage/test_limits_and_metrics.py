"""Usage limits (spend alerts), the metrics API and the seed-002 PATCH of metered items."""

import pytest

from customers.models import Customer, UsageLimit
from tests.openapi import assert_error_body, assert_matches_schema
from tests.usage.factories import add_metered_item, event, ingest
from usage import services
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def _webhooks(event_type):
    return WebhookEvent.objects.filter(type=event_type).count()


def test_usage_limit_api(api, other_api, customer):
    url = f"/api/v1/customers/{customer.pk}/usage-limits"
    created = api.post(url, {"amount": 2000, "action": "WARNING"}, format="json")
    assert created.status_code == 201, created.content
    assert_matches_schema(created, "post", "/api/v1/customers/{customer_id}/usage-limits")
    assert set(created.json()) == {"id", "amount", "action"}
    listed = api.get(url)
    assert_matches_schema(listed, "get", "/api/v1/customers/{customer_id}/usage-limits")
    assert [item["amount"] for item in listed.json()["data"]] == [2000]
    errors = assert_error_body(api.post(url, {"amount": 1, "action": "PANIC"}, format="json"), 400)
    assert "action" in errors["errors"]
    assert_error_body(other_api.get(url), 404)
    limit_url = f"{url}/{created.json()['id']}"
    assert_error_body(other_api.delete(limit_url), 404)
    assert api.delete(limit_url).status_code == 204
    assert not UsageLimit.objects.exists()


def test_a_warning_fires_once_per_period(api, tenant, customer, subscription, calls):
    add_metered_item(subscription, calls, amount=100)
    api.post(
        f"/api/v1/customers/{customer.pk}/usage-limits",
        {"amount": 1000, "action": "WARNING"},
        format="json",
    )
    ingest(tenant, event(subscription, "api_calls", 9))
    assert services.usage_limits_evaluate() == 0
    ingest(tenant, event(subscription, "api_calls", 1))
    assert services.usage_limits_evaluate() == 1
    ingest(tenant, event(subscription, "api_calls", 50))
    assert services.usage_limits_evaluate() == 0
    assert _webhooks("usage_limit.warning") == 1
    announced = WebhookEvent.objects.get(type="usage_limit.warning").data
    assert (announced["amount"], announced["action"]) == (1000, "WARNING")
    assert announced["cost"] == {"amount": 1000, "currency": subscription.currency}
    customer.refresh_from_db()
    assert customer.status == Customer.Status.ACTIVE


def test_ingestion_schedules_an_evaluation_only_for_customers_with_limits(
    api, tenant, customer, subscription, calls, django_capture_on_commit_callbacks
):
    add_metered_item(subscription, calls, amount=100)
    with django_capture_on_commit_callbacks() as without_limits:
        ingest(tenant, event(subscription, "api_calls", 20))
    assert without_limits == []
    api.post(
        f"/api/v1/customers/{customer.pk}/usage-limits",
        {"amount": 2500, "action": "WARNING"},
        format="json",
    )
    # A single event, the hot path: the nudge is debounced per customer in the cache.
    with django_capture_on_commit_callbacks(execute=True) as with_limits:
        response = api.post("/api/v1/events", event(subscription, "api_calls", 5), format="json")
    assert response.status_code == 201, response.content
    assert len(with_limits) == 1
    assert _webhooks("usage_limit.warning") == 1


def test_a_disable_limit_disables_the_customer_after_an_ingestion_burst(
    api, tenant, customer, subscription, calls, django_capture_on_commit_callbacks
):
    add_metered_item(subscription, calls, amount=100)
    url = f"/api/v1/customers/{customer.pk}/usage-limits"
    api.post(url, {"amount": 500, "action": "DISABLE"}, format="json")
    # The burst itself triggers the evaluation (tasks run eagerly in tests).
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/events/batch",
            {"events": [event(subscription, "api_calls", 3), event(subscription, "api_calls", 3)]},
            format="json",
        )
    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.status == Customer.Status.DISABLED
    assert _webhooks("usage_limit.disabled") == 1
    refused = api.post("/api/v1/events", event(subscription, "api_calls", 1), format="json")
    assert "is disabled" in assert_error_body(refused, 400)["errors"]["customer"][0]


def test_metrics_api(api, other_api):
    body = {
        "name": "API calls",
        "code": "api_calls",
        "aggregation_method": "count",
        "filters": [{"name": "region", "value": "eu", "type": "exclusive"}],
        "unit_name": "calls",
    }
    created = api.post("/api/v1/metrics", body, format="json")
    assert created.status_code == 201, created.content
    assert_matches_schema(created, "post", "/api/v1/metrics")
    assert created.json()["filters"] == body["filters"]
    duplicate = api.post("/api/v1/metrics", body, format="json")
    assert "code" in assert_error_body(duplicate, 400)["errors"]
    bad = api.post(
        "/api/v1/metrics", {**body, "code": "x", "aggregation_method": "avg"}, format="json"
    )
    assert "aggregation_method" in assert_error_body(bad, 400)["errors"]
    listed = api.get("/api/v1/metrics")
    assert_matches_schema(listed, "get", "/api/v1/metrics")
    assert [m["code"] for m in listed.json()["data"]] == ["api_calls"]
    metric_url = f"/api/v1/metrics/{created.json()['id']}"
    replaced = api.put(metric_url, {**body, "name": "Calls", "filters": []}, format="json")
    assert replaced.status_code == 200
    assert replaced.json()["filters"] == []
    assert_error_body(other_api.get(metric_url), 404)


def test_a_metrics_code_is_fixed_once_it_has_usage(api, tenant, subscription, calls):
    ingest(tenant, event(subscription, "api_calls", 1))
    response = api.patch(f"/api/v1/metrics/{calls.pk}", {"code": "renamed"}, format="json")
    assert "code" in assert_error_body(response, 400)["errors"]


def test_patch_a_metered_item_with_the_seed_002_body(api, subscription, calls):
    item = add_metered_item(subscription, calls, amount=1)
    url = f"/api/v1/subscription-items/{item.pk}"
    body = {
        "calc_rule_type": "stepped",
        "price": {
            "unit": 1,
            "type": "FlatPrice",
            "steps": [
                {"threshold": "0", "money_value": "2"},
                {"threshold": "100", "money_value": "1.5"},
            ],
        },
        "active_from": "2026-03-05T00:00:00Z",
        "active_to": None,
        "description": "API calls",
        "comment": "volume deal",
    }
    response = api.patch(url, body, format="json")
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["calc_rule_type"] == "stepped"
    assert answer["pricing"]["steps"][1] == {"threshold": "100", "money_value": "1.5"}
    assert answer["active_range"] == {"start": "2026-03-05T00:00:00Z", "end": None}
    missing = api.patch(url, {"calc_rule_type": "unit", "price": {"steps": []}}, format="json")
    assert "price.money_value" in assert_error_body(missing, 400)["errors"]
    bad_steps = api.patch(
        url,
        {
            "price": {
                "steps": [
                    {"threshold": "1", "money_value": "1"},
                    {"threshold": "1", "money_value": "2"},
                ]
            }
        },
        format="json",
    )
    assert_error_body(bad_steps, 400)
