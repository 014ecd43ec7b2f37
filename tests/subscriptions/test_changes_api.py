"""Seats, quantities, plan and price changes: prorations checked to the cent.

Every change happens at MID (2026-01-16 00:00 UTC) of the period [2026-01-01, 2026-02-01):
16 of 31 days are left, so an amount A prorates to round_half_up(A * 16 / 31)."""

import pytest

from invoicing.models import Invoice, InvoiceLine
from subscriptions import services
from subscriptions.models import Subscription
from tests.openapi import assert_error_body, assert_matches_schema
from tests.subscriptions.conftest import MID
from tests.subscriptions.factories import PriceFactory, make_plan

pytestmark = pytest.mark.django_db


def start(api, customer, **body):
    response = api.post(f"/api/v1/customers/{customer.id}/subscriptions", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def pending_amounts(subscription_id):
    return list(
        InvoiceLine.objects.filter(subscription_id=subscription_id, invoice__isnull=True)
        .order_by("created_at", "id")
        .values_list("sub_total", flat=True)
    )


def test_seats_add_and_remove_are_prorated_on_the_next_invoice(
    api, clock, invoice_customer, seat_plan
):
    subscription = start(api, invoice_customer, subscription_plan="team", seat_number=2)
    clock.move_to(MID)

    response = api.post(
        f"/api/v1/subscriptions/{subscription['id']}/seats/add", {"seats": 1}, format="json"
    )
    assert response.status_code == 200, response.content
    assert_matches_schema(response, "post", "/api/v1/subscriptions/{id}/seats/add")
    assert response.json()["seat_number"] == 3
    # 2 seats (2000) credited for 16/31: 1032.26 -> -1032; 3 seats (3000) charged: 1548.39 -> 1548.
    assert pending_amounts(subscription["id"]) == [-1032, 1548]

    response = api.post(
        f"/api/v1/subscriptions/{subscription['id']}/seats/remove", {"seats": 2}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["seat_number"] == 1
    # 3000 credited (-1548), 1000 charged (516.13 -> 516).
    assert pending_amounts(subscription["id"]) == [-1032, 1548, -1548, 516]


def test_removing_every_seat_is_400(api, clock, invoice_customer, seat_plan):
    subscription = start(api, invoice_customer, subscription_plan="team", seat_number=2)
    response = api.post(
        f"/api/v1/subscriptions/{subscription['id']}/seats/remove", {"seats": 2}, format="json"
    )
    assert response.status_code == 400
    assert Subscription.objects.get(pk=subscription["id"]).seat_number == 2


def test_seats_on_a_plan_that_is_not_per_seat_is_409(api, clock, invoice_customer, plan_and_price):
    subscription = start(api, invoice_customer, subscription_plan="pro")
    response = api.post(
        f"/api/v1/subscriptions/{subscription['id']}/seats/add", {"seats": 1}, format="json"
    )
    assert_error_body(response, 409, errors=False)
    assert Subscription.objects.get(pk=subscription["id"]).seat_number == 1


def test_seat_change_invoiced_at_once_when_the_tenant_says_so(
    api, tenant, clock, invoice_customer, seat_plan
):
    tenant.invoice_changes_immediately = True
    tenant.save()
    subscription = start(api, invoice_customer, subscription_plan="team", seat_number=2)
    clock.move_to(MID)
    api.post(f"/api/v1/subscriptions/{subscription['id']}/seats/add", {"seats": 1}, format="json")

    change = Invoice.objects.get(subscription_id=subscription["id"], billing_reason="change")
    assert (change.total, change.status) == (1548 - 1032, "open")
    assert pending_amounts(subscription["id"]) == []


QUANTITY_URL = "/api/v1/customers/{customer}/subscriptions/{product}/quantity"


def test_quantity_get_set_and_update(api, clock, invoice_customer, seat_plan):
    plan, price = seat_plan
    subscription = start(api, invoice_customer, subscription_plan="team", seat_number=11)
    url = QUANTITY_URL.format(customer=invoice_customer.id, product=plan.product_id)

    response = api.get(url)
    assert response.status_code == 200
    assert_matches_schema(
        response, "get", "/api/v1/customers/{customer_id}/subscriptions/{product_id}/quantity"
    )
    assert response.json() == {"currentQuantity": 11}
    # The plan's code_name names the same item.
    by_code = QUANTITY_URL.format(customer=invoice_customer.id, product="team")
    assert api.get(by_code).json() == {"currentQuantity": 11}

    clock.move_to(MID)
    response = api.patch(url, {"action": "SET", "quantity": 12}, format="json")
    assert response.status_code == 200, response.content
    assert_matches_schema(
        response, "patch", "/api/v1/customers/{customer_id}/subscriptions/{product_id}/quantity"
    )
    assert response.json() == {
        "item_type": "plan",
        "quantity": 12,
        "unit_price": 1000,
        "item_price_id": str(price.id),
    }
    # 11000 * 16/31 = 5677.42 -> -5677; 12000 * 16/31 = 6193.55 -> 6194.
    assert pending_amounts(subscription["id"]) == [-5677, 6194]

    response = api.patch(url, {"action": "UPDATE", "quantity": -2}, format="json")
    assert response.json()["quantity"] == 10
    assert Subscription.objects.get(pk=subscription["id"]).seat_number == 10
    assert api.get(url).json() == {"currentQuantity": 10}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {},
            {
                "action": ["action should not be empty", "action must be a valid enum value"],
                "quantity": [
                    "quantity should not be empty",
                    "quantity must be a number conforming to the specified constraints",
                ],
            },
        ),
        ({"action": "ADD", "quantity": 1}, {"action": ["action must be a valid enum value"]}),
        (
            {"action": "SET", "quantity": "ten"},
            {"quantity": ["quantity must be a number conforming to the specified constraints"]},
        ),
        ({"action": "SET", "quantity": 0}, {"quantity": ["quantity must not be less than 1"]}),
        ({"action": "UPDATE", "quantity": 0}, {"quantity": ["quantity must not be equal to 0"]}),
    ],
)
def test_quantity_validation_messages(api, clock, invoice_customer, seat_plan, body, errors):
    start(api, invoice_customer, subscription_plan="team", seat_number=2)
    url = QUANTITY_URL.format(customer=invoice_customer.id, product="team")
    response = api.patch(url, body, format="json")
    assert response.status_code == 400
    payload = response.json()
    assert payload["errors"] == errors
    expected_messages = [message for messages in errors.values() for message in messages]
    assert payload["message"] == expected_messages
    assert payload["internalError"] == {
        "statusCode": 400,
        "message": expected_messages,
        "error": "Bad Request",
    }


def test_quantity_update_below_one_is_400(api, clock, invoice_customer, seat_plan):
    start(api, invoice_customer, subscription_plan="team", seat_number=2)
    url = QUANTITY_URL.format(customer=invoice_customer.id, product="team")
    response = api.patch(url, {"action": "UPDATE", "quantity": -2}, format="json")
    assert response.status_code == 400
    assert api.get(url).json() == {"currentQuantity": 2}


def test_quantity_of_unknown_product_is_404(api, clock, invoice_customer, seat_plan):
    start(api, invoice_customer, subscription_plan="team")
    assert (
        api.get(QUANTITY_URL.format(customer=invoice_customer.id, product="nope")).status_code
        == 404
    )


def test_change_plan_instantly_credits_and_charges(
    api, tenant, clock, invoice_customer, plan_and_price
):
    subscription = start(api, invoice_customer, subscription_plan="pro")
    _, bigger_price = make_plan(tenant, amount=2000, code_name="bigger")
    clock.move_to(MID)

    response = api.post(
        f"/api/v1/subscriptions/{subscription['id']}/change-plan",
        {"plan": "bigger", "price": str(bigger_price.id), "when": "instantly"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert_matches_schema(response, "post", "/api/v1/subscriptions/{id}/change-plan")
    assert response.json()["plan"]["code_name"] == "bigger"
    assert response.json()["price"]["amount"] == 2000
    # 1000 * 16/31 = 516.13 -> -516; 2000 * 16/31 = 1032.26 -> 1032.
    assert pending_amounts(subscription["id"]) == [-516, 1032]
    # The old plan's metered item ended at the change.
    items = api.get(f"/api/v1/subscriptions/{subscription['id']}/items").json()["data"]
    usage = [i for i in items if i["item_type"] == "usage"]
    assert [u["active_to"] for u in usage] == ["2026-01-16T00:00:00Z"]


def test_change_price_instantly_invoiced_and_charged_at_once(
    api, tenant, clock, card_customer, plan_and_price
):
    tenant.invoice_changes_immediately = True
    tenant.save()
    plan, _ = plan_and_price
    dearer = PriceFactory(tenant=tenant, product=plan.product, amount=1500)
    plan.prices.add(dearer)
    subscription = start(api, card_customer, subscription_plan="pro", card_token="tok_visa")
    clock.move_to(MID)

    response = api.post(
        f"/api/v1/subscriptions/{subscription['id']}/change-price",
        {"price": str(dearer.id), "when": "instantly"},
        format="json",
    )
    assert response.status_code == 200, response.content
    change = Invoice.objects.get(subscription_id=subscription["id"], billing_reason="change")
    # -516 + round(1500 * 16/31 = 774.19) = 774 -> 258, paid with the card on file.
    assert [line.sub_total for line in change.lines.order_by("position")] == [-516, 774]
    assert (change.total, change.status) == (258, "paid")


def test_change_next_cycle_is_stored_then_applied_by_the_renewal(
    api, tenant, clock, invoice_customer, plan_and_price
):
    subscription = start(api, invoice_customer, subscription_plan="pro")
    yearly_plan, yearly = make_plan(tenant, amount=10000, schedule="year", code_name="yearly")

    response = api.post(
        f"/api/v1/subscriptions/{subscription['id']}/change-plan",
        {"plan": "yearly", "when": "next-cycle"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["plan"]["code_name"] == "pro"
    assert body["pending_change"]["plan"] == str(yearly_plan.id)
    assert body["pending_change"]["effective_at"] == "2026-02-01T00:00:00Z"
    assert pending_amounts(subscription["id"]) == []

    changed = services.subscription_apply_pending_change(
        Subscription.objects.get(pk=subscription["id"])
    )
    assert (changed.plan_id, changed.price_id, changed.schedule) == (
        yearly_plan.id,
        yearly.id,
        "year",
    )
    assert changed.pending_change is None
    # Re-anchored at the old period's end: the next period is a year from 2026-02-01.
    from billing_project.billing_math import period_bounds

    start_, end = period_bounds(changed.anchor, changed.schedule, changed.period_index + 1)
    assert (start_.isoformat(), end.isoformat()) == (
        "2026-02-01T00:00:00+00:00",
        "2027-02-01T00:00:00+00:00",
    )
    lines = services.renewal_lines(changed, start_, end)
    assert [(line.kind, line.amount) for line in lines] == [("subscription", 10000)]


def test_instant_change_to_another_schedule_is_400(
    api, tenant, clock, invoice_customer, plan_and_price
):
    subscription = start(api, invoice_customer, subscription_plan="pro")
    make_plan(tenant, amount=10000, schedule="year", code_name="yearly")
    response = api.post(
        f"/api/v1/subscriptions/{subscription['id']}/change-plan",
        {"plan": "yearly", "when": "instantly"},
        format="json",
    )
    assert "price" in assert_error_body(response, 400, errors=True)["errors"]
    unchanged = Subscription.objects.get(pk=subscription["id"])
    assert (unchanged.plan.code_name, unchanged.schedule) == ("pro", "month")
    assert pending_amounts(subscription["id"]) == []
