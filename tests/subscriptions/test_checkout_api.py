"""Checkouts (API.md, Invoicing and payments; seed 001): a quote priced with tax, paid in one
invoice that starts its subscriptions."""

import pytest

from invoicing.models import Invoice
from subscriptions.models import Subscription
from tenants.models import TaxRule
from tests.openapi import assert_error_body, assert_matches_schema
from tests.subscriptions.factories import make_plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def german_vat(tenant):
    # The customers of these tests live in DE (CustomerFactory), the tenant too: 19 % standard.
    return TaxRule.objects.create(tenant=tenant, country="DE", tax_type="standard", rate=19)


def _create(api, customer, plan, price, **extra):
    body = {
        "name": "Launch bundle",
        "brand": "default",
        "customer": str(customer.id),
        "items": [
            {"description": "Onboarding", "amount": 5000, "currency": "EUR"},
            {"description": "Hardware", "amount": 11900, "currency": "EUR", "include_tax": True},
        ],
        "subscriptions": [{"plan": plan.code_name, "price": str(price.id), "seat_number": 3}],
        **extra,
    }
    return api.post("/api/v1/checkouts", body, format="json")


def test_quote_prices_items_and_subscriptions_with_tax(api, clock, card_customer, german_vat):
    plan, price = make_plan(card_customer.tenant, amount=1000, code_name="team", per_seat=True)
    response = _create(api, card_customer, plan, price)
    assert response.status_code == 201, response.content
    assert_matches_schema(response, "post", "/api/v1/checkouts")
    quote = response.json()
    lines = [
        (line["description"], line["sub_total"], line["tax_total"], line["total"])
        for line in quote["lines"]
    ]
    # 50.00 + 19 %; 119.00 tax-inclusive (100.00 + 19.00); 3 seats x 10.00 + 19 %.
    assert lines[0] == ("Onboarding", 5000, 950, 5950)
    assert lines[1] == ("Hardware", 10000, 1900, 11900)
    assert lines[2][1:] == (3000, 570, 3570)
    assert (quote["sub_total"], quote["tax_total"], quote["total"]) == (18000, 3420, 21420)
    assert quote["status"] == "open" and quote["invoice"] is None
    fetched = api.get(f"/api/v1/checkouts/{quote['id']}")
    assert fetched.json()["total"] == 21420
    assert_matches_schema(fetched, "get", "/api/v1/checkouts/{id}")


def test_paying_issues_one_invoice_and_starts_the_subscriptions(api, clock, card_customer):
    plan, price = make_plan(card_customer.tenant, amount=1000, code_name="team", per_seat=True)
    checkout = _create(api, card_customer, plan, price).json()

    paid = api.post(
        f"/api/v1/checkouts/{checkout['id']}/pay", {"card_token": "tok_visa"}, format="json"
    )
    assert paid.status_code == 200, paid.content
    assert_matches_schema(paid, "post", "/api/v1/checkouts/{id}/pay")
    body = paid.json()
    assert body["invoice"]["status"] == "paid"
    assert body["invoice"]["total"] == checkout["total"] == 5000 + 11900 + 3000
    assert body["payment"]["amount"] == checkout["total"]
    assert body["payment"]["status"] == "completed"
    assert [(s["status"], s["seat_number"]) for s in body["subscriptions"]] == [("active", 3)]
    assert Invoice.objects.count() == 1, (
        "the subscription's first period is on the checkout's invoice"
    )

    again = api.post(
        f"/api/v1/checkouts/{checkout['id']}/pay", {"card_token": "tok_visa"}, format="json"
    )
    assert_error_body(again, 409)
    assert Invoice.objects.count() == 1
    assert api.get(f"/api/v1/checkouts/{checkout['id']}").json()["status"] == "paid"


def test_a_declined_card_pays_nothing_and_starts_nothing(api, clock, card_customer):
    plan, price = make_plan(card_customer.tenant, amount=1000, code_name="team", per_seat=True)
    checkout = _create(api, card_customer, plan, price).json()

    declined = api.post(
        f"/api/v1/checkouts/{checkout['id']}/pay",
        {"card_token": "tok_card_declined"},
        format="json",
    )
    body = assert_error_body(declined, 402)
    assert body["failure_reason"] == "general_decline"
    assert not Subscription.objects.filter(status="active").exists()
    assert list(Invoice.objects.values_list("status", flat=True)) == ["void"]
    assert api.get(f"/api/v1/checkouts/{checkout['id']}").json()["status"] == "open"

    # The customer may try again with another card.
    paid = api.post(
        f"/api/v1/checkouts/{checkout['id']}/pay", {"card_token": "tok_visa"}, format="json"
    )
    assert paid.status_code == 200
    assert Subscription.objects.filter(status="active").count() == 1


def test_bad_checkouts_are_400(api, clock, card_customer):
    plan, price = make_plan(card_customer.tenant, amount=1000, code_name="team")
    mixed = _create(
        api,
        card_customer,
        plan,
        price,
        items=[{"description": "x", "amount": 1, "currency": "USD"}],
    )
    assert "currency" in assert_error_body(mixed, 400)["errors"]
    unknown = _create(
        api, card_customer, plan, price, subscriptions=[{"plan": "nope", "price": str(price.id)}]
    )
    assert "subscriptions.0.plan" in assert_error_body(unknown, 400)["errors"]
    empty = api.post("/api/v1/checkouts", {"customer": str(card_customer.id)}, format="json")
    assert "items" in assert_error_body(empty, 400)["errors"]


def test_checkouts_of_other_tenants_are_404(api, other_api, clock, card_customer):
    plan, price = make_plan(card_customer.tenant, amount=1000, code_name="team")
    checkout = _create(api, card_customer, plan, price).json()
    assert_error_body(other_api.get(f"/api/v1/checkouts/{checkout['id']}"), 404)
    assert_error_body(
        other_api.post(
            f"/api/v1/checkouts/{checkout['id']}/pay", {"card_token": "tok_visa"}, format="json"
        ),
        404,
    )
    assert_error_body(
        other_api.post(
            "/api/v1/checkouts",
            {
                "customer": str(card_customer.id),
                "items": [{"description": "x", "amount": 1, "currency": "EUR"}],
            },
            format="json",
        ),
        400,
    )
