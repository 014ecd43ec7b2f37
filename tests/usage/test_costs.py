"""Aggregation and cost estimates against hand-computed golden values."""

import datetime as dt
from decimal import Decimal

import pytest

from tests.openapi import assert_error_body, assert_matches_schema
from tests.usage.conftest import ANCHOR, NOW
from tests.usage.factories import (
    add_metered_item,
    event,
    ingest,
    make_customer,
    make_metric,
    make_subscription,
)
from usage import services
from usage.selectors import Window, customer_cost_estimate, metric_usage

pytestmark = pytest.mark.django_db

# Inside the period [ANCHOR, ANCHOR + 1 month): one event in the partial first hour (read from
# the events), the others in whole hours (read from the rollups).
T1 = ANCHOR + dt.timedelta(minutes=5)
T2 = ANCHOR + dt.timedelta(days=2, minutes=40)
T3 = NOW - dt.timedelta(minutes=1)


def _period_usage(subscription, metric) -> Decimal:
    window = Window(subscription.current_period_start, subscription.valid_until)
    return metric_usage(
        tenant_id=subscription.tenant_id,
        subscription_id=subscription.pk,
        metric=metric,
        window=window,
    )


@pytest.fixture
def sample(tenant, subscription):
    """Three events with values 3, 4.5, 1 and properties region/user."""

    def send(code):
        ingest(
            tenant,
            event(subscription, code, 3, at=T1, properties={"region": "eu", "user": "u1", "gb": 7}),
            event(subscription, code, "4.5", at=T2, properties={"region": "us", "user": "u2"}),
            event(subscription, code, 1, at=T3, properties={"region": "eu", "user": "u1", "gb": 2}),
        )

    return send


@pytest.mark.parametrize(
    ("method", "prop", "filters", "expected"),
    [
        ("count", "", [], "3"),
        ("sum", "", [], "8.5"),
        ("max", "", [], "4.5"),
        ("latest", "", [], "1"),
        ("unique_count", "user", [], "2"),
        ("sum", "gb", [], "13.5"),  # 7 + 4.5 (no gb: the value) + 2
        ("sum", "", [{"name": "region", "value": "eu", "type": "inclusive"}], "4"),
        ("sum", "", [{"name": "region", "value": "eu", "type": "exclusive"}], "4.5"),
        (
            "count",
            "",
            [
                {"name": "user", "value": "u1", "type": "inclusive"},
                {"name": "user", "value": "u2", "type": "inclusive"},
            ],
            "3",
        ),
        ("max", "", [{"name": "region", "value": "us", "type": "exclusive"}], "3"),
        ("latest", "", [{"name": "region", "value": "eu", "type": "exclusive"}], "4.5"),
        ("unique_count", "user", [{"name": "region", "value": "us", "type": "exclusive"}], "1"),
    ],
)
def test_aggregations_in_sql_equal_golden_values(
    tenant, subscription, sample, method, prop, filters, expected
):
    metric = make_metric(tenant, "m", method, prop=prop, filters=filters)
    sample("m")
    assert _period_usage(subscription, metric) == Decimal(expected)


# Usage 25 (10 + 10 + 5) of a sum metric, priced every way there is.
TIERS = [
    {"first_unit": 1, "last_unit": 10, "unit_price": "2", "flat_fee": 0},
    {"first_unit": 11, "last_unit": None, "unit_price": "1.5", "flat_fee": 5},
]
STEPS = [
    {"threshold": "0", "money_value": "1"},
    {"threshold": "10", "money_value": "0.5"},
    {"threshold": "20", "money_value": "0.1"},
]


@pytest.mark.parametrize(
    ("pricing", "expected"),
    [
        ({"price_type": "per_unit", "amount": 3}, 75),
        ({"price_type": "fixed_price", "amount": 3}, 75),  # a usage fixed price is per unit
        ({"price_type": "package", "amount": 100, "units": 10}, 300),  # 3 started packages
        ({"price_type": "tiered_volume", "tiers": TIERS}, 43),  # 25 x 1.5 + 5 = 42.5
        ({"price_type": "tiered_graduated", "tiers": TIERS}, 48),  # 20 + 22.5 + 5 = 47.5
        ({"calc_rule_type": "unit", "pricing": {"money_value": "0.4"}}, 10),
        ({"calc_rule_type": "stepped", "pricing": {"steps": STEPS}}, 16),  # 10 + 5 + 0.5
        ({"calc_rule_type": "staged", "pricing": {"steps": STEPS}}, 3),  # 25 x 0.1 = 2.5
        (
            {
                "calc_rule_type": "overcommit",
                "pricing": {"default_value": "20", "money_value": "2"},
            },
            10,
        ),
        ({"calc_rule_type": "post_invoice", "pricing": {"money_value": "1"}}, 25),
        ({"calc_rule_type": "commit", "pricing": {"default_value": "100", "money_value": "1"}}, 0),
    ],
)
def test_costs_of_every_price_type_equal_golden_values(
    tenant, customer, subscription, calls, pricing, expected
):
    add_metered_item(subscription, calls, **pricing)
    ingest(
        tenant,
        event(subscription, "api_calls", 10, at=T1),
        event(subscription, "api_calls", 10, at=T2),
        event(subscription, "api_calls", 5, at=T3),
    )
    estimate = customer_cost_estimate(customer=customer)
    assert estimate.total == expected
    if expected:
        (cost,) = estimate.costs
        assert (cost.metric.code, cost.usage, cost.amount) == ("api_calls", Decimal(25), expected)


def test_costs_endpoint(api, tenant, customer, subscription, calls):
    storage = make_metric(tenant, "storage_gb", "max")
    add_metered_item(subscription, calls, amount=2)
    add_metered_item(subscription, storage, calc_rule_type="unit", pricing={"money_value": "0.125"})
    ingest(
        tenant,
        event(subscription, "api_calls", "1.25", at=T1),
        event(subscription, "api_calls", 4, at=T2),
        event(subscription, "storage_gb", 80, at=T1),
        event(subscription, "storage_gb", 120, at=T2),
    )
    response = api.get(f"/api/v1/customers/{customer.pk}/costs")
    assert_matches_schema(response, "get", "/api/v1/customers/{customer_id}/costs")
    body = response.json()
    assert body["cost"] == {"amount": 11 + 15, "currency": "EUR"}  # 10.5 → 11; 120 x 0.125
    assert [(c["metric"]["code"], c["usage"], c["cost"]["amount"]) for c in body["costs"]] == [
        ("api_calls", "5.25", 11),
        ("storage_gb", "120", 15),
    ]
    other = make_customer(tenant)
    empty = api.get(f"/api/v1/customers/{other.pk}/costs").json()
    assert empty == {"costs": [], "cost": {"amount": 0, "currency": "EUR"}}


def test_costs_of_another_tenants_customer_are_404(other_api, customer):
    assert_error_body(other_api.get(f"/api/v1/customers/{customer.pk}/costs"), 404)


def test_usages_and_events_count_alike(api, tenant, subscription, calls):
    twin = make_subscription(make_customer(tenant), anchor=ANCHOR)
    for target in (subscription, twin):
        add_metered_item(target, calls, calc_rule_type="stepped", pricing={"steps": STEPS})
    ingest(
        tenant,
        event(subscription, "api_calls", 12, at=T1),
        event(subscription, "api_calls", 9, at=T2),
    )
    response = api.post(
        f"/api/v1/subscriptions/{twin.pk}/usages",
        [
            {
                "option_code": "api_calls",
                "usage_start": T1.isoformat(),
                "usage_end": T2.isoformat(),
                "units": 12,
            },
            {
                "option_code": "api_calls",
                "usage_start": T2.isoformat(),
                "usage_end": T3.isoformat(),
                "units": 9,
            },
        ],
        format="json",
    )
    assert response.status_code == 201, response.content
    assert _period_usage(twin, calls) == _period_usage(subscription, calls) == 21
    events_cost = customer_cost_estimate(customer=subscription.customer)
    usages_cost = customer_cost_estimate(customer=twin.customer)
    assert events_cost.total == usages_cost.total == 15  # 10 + 10 x 0.5 + 1 x 0.1 = 15.1


def test_unbilled_events_before_the_period_count_as_late_usage(
    tenant, customer, subscription, calls
):
    add_metered_item(subscription, calls, amount=1)
    ingest(tenant, event(subscription, "api_calls", 7, at=ANCHOR - dt.timedelta(days=3)))
    ingest(tenant, event(subscription, "api_calls", 2, at=T2))
    assert customer_cost_estimate(customer=customer).total == 9


def test_active_range_limits_what_an_item_bills(tenant, customer, subscription, calls):
    add_metered_item(subscription, calls, amount=1, active_from=T2 - dt.timedelta(hours=1))
    ingest(
        tenant,
        event(subscription, "api_calls", 7, at=T1),
        event(subscription, "api_calls", 2, at=T2),
    )
    assert customer_cost_estimate(customer=customer).total == 2


def test_changing_a_metrics_filters_rebuilds_its_rollups(
    api, tenant, customer, subscription, sample
):
    metric = make_metric(tenant, "m", "sum")
    add_metered_item(subscription, metric, amount=1)
    sample("m")
    assert customer_cost_estimate(customer=customer).total == 9  # 8.5
    response = api.patch(
        f"/api/v1/metrics/{metric.pk}",
        {"filters": [{"name": "region", "value": "eu", "type": "inclusive"}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert customer_cost_estimate(customer=customer).total == 4
    assert services.rollups_rebuild(tenant=tenant, codes={"m"}) == 2
