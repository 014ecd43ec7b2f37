"""Seed 004: subscription usages on the one usage table."""

import datetime as dt

import pytest

from tests.openapi import assert_error_body, assert_matches_schema
from tests.usage.conftest import ANCHOR
from tests.usage.factories import add_metered_item
from usage.models import UsageEvent, UsageRollup
from usage.selectors import customer_cost_estimate

pytestmark = pytest.mark.django_db

PATH = "/api/v1/subscriptions/{subscription_id}/usages"


def _usage(day: int, units: int, **fields) -> dict:
    start = ANCHOR + dt.timedelta(days=day)
    return {
        "option_code": "api_calls",
        "usage_start": start.strftime("%Y-%m-%d %H:%M:%S"),
        "usage_end": (start + dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
        "units": units,
        "description": f"day {day}",
        **fields,
    }


@pytest.fixture
def usages_url(subscription):
    return PATH.format(subscription_id=subscription.pk)


def test_save_list_update_and_delete_usages(api, subscription, calls, usages_url):
    add_metered_item(subscription, calls, amount=1)
    created = api.post(usages_url, [_usage(d, 10 * (d + 1)) for d in range(5)], format="json")
    assert created.status_code == 201, created.content
    assert_matches_schema(created, "post", "/api/v1/subscriptions/{subscription_id}/usages")
    references = [u["usage_reference"] for u in created.json()]
    assert references == sorted(references) and len(set(references)) == 5
    assert created.json()[0]["subscription_reference"] == str(subscription.pk)
    assert customer_cost_estimate(customer=subscription.customer).total == 150

    window = {
        "interval_start": (ANCHOR + dt.timedelta(days=1)).isoformat(),
        "interval_end": (ANCHOR + dt.timedelta(days=3, hours=2)).isoformat(),
        "page": 1,
        "limit": 2,
    }
    page = api.get(usages_url, window)
    assert_matches_schema(page, "get", "/api/v1/subscriptions/{subscription_id}/usages")
    body = page.json()
    assert (body["page"], body["limit"], body["total"]) == (1, 2, 3)
    assert [u["units"] for u in body["data"]] == [20, 30]
    assert [u["units"] for u in api.get(usages_url, {**window, "page": 2}).json()["data"]] == [40]

    url = f"{usages_url}/{references[0]}"
    updated = api.put(url, {"units": 1, "description": "fixed"}, format="json")
    assert updated.status_code == 200, updated.content
    assert_matches_schema(
        updated, "put", "/api/v1/subscriptions/{subscription_id}/usages/{usage_reference}"
    )
    assert (updated.json()["units"], updated.json()["description"]) == (1, "fixed")
    assert customer_cost_estimate(customer=subscription.customer).total == 141

    deleted = api.delete(f"{usages_url}?usage_reference={references[1]}")
    assert deleted.status_code == 204
    assert customer_cost_estimate(customer=subscription.customer).total == 121
    assert api.delete(f"{usages_url}?option_code=api_calls").status_code == 204
    assert not UsageEvent.objects.exists()
    assert customer_cost_estimate(customer=subscription.customer).total == 0
    assert sum(UsageRollup.objects.values_list("event_count", flat=True)) == 0


def test_billed_usage_is_immutable(api, subscription, calls, usages_url):
    created = api.post(usages_url, [_usage(1, 5)], format="json").json()
    reference = created[0]["usage_reference"]
    UsageEvent.objects.filter(usage_reference=reference).update(renewal_order_reference="INV-1")
    assert_error_body(api.put(f"{usages_url}/{reference}", {"units": 9}, format="json"), 409)
    assert_error_body(api.delete(f"{usages_url}?usage_reference={reference}"), 409)
    listed = api.get(
        usages_url,
        {
            "interval_start": ANCHOR.isoformat(),
            "interval_end": (ANCHOR + dt.timedelta(days=9)).isoformat(),
            "page": 1,
            "limit": 10,
            "renewal_order_reference": "INV-1",
        },
    ).json()
    assert [u["renewal_order_reference"] for u in listed["data"]] == ["INV-1"]


def test_usage_requests_are_validated(api, other_api, subscription, calls, usages_url):
    errors = assert_error_body(api.get(usages_url), 400, errors=True)["errors"]
    assert {"interval_start", "interval_end", "page", "limit"} <= set(errors)
    response = api.get(
        usages_url,
        {
            "interval_start": ANCHOR.isoformat(),
            "interval_end": ANCHOR.isoformat(),
            "page": 1,
            "limit": 101,
        },
    )
    assert "limit" in assert_error_body(response, 400)["errors"]
    response = api.post(usages_url, [_usage(1, 5, option_code="nope")], format="json")
    assert "0.option_code" in assert_error_body(response, 400)["errors"]
    response = api.post(usages_url, [_usage(1, -1)], format="json")
    assert "0.units" in assert_error_body(response, 400)["errors"]
    assert_error_body(api.delete(usages_url), 400)
    assert_error_body(other_api.post(usages_url, [_usage(1, 5)], format="json"), 404)
    assert not UsageEvent.objects.exists()
