import datetime as dt

import pytest

from invoicing.models import Invoice, Payment
from subscriptions.models import Subscription, SubscriptionItem
from tests.openapi import assert_matches_schema
from tests.subscriptions.conftest import START
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

UTC = dt.UTC


def start(api, customer, **body):
    return api.post(f"/api/v1/customers/{customer.id}/subscriptions", body, format="json")


def test_card_start_charges_the_first_period_at_once(
    api, tenant, clock, card_customer, plan_and_price
):
    plan, price = plan_and_price
    response = start(api, card_customer, subscription_plan="pro", card_token="tok_visa")

    assert response.status_code == 201, response.content
    assert_matches_schema(response, "post", "/api/v1/customers/{customer_id}/subscriptions")
    body = response.json()
    assert body["status"] == "active"
    assert body["plan"] == {"id": str(plan.id), "name": plan.name, "code_name": "pro"}
    assert body["price"] == {
        "id": str(price.id),
        "amount": 1000,
        "currency": "EUR",
        "schedule": "month",
    }
    assert body["current_period_start"] == "2026-01-01T00:00:00Z"
    assert body["valid_until"] == "2026-02-01T00:00:00Z"
    assert body["seat_number"] == 1

    invoice = Invoice.objects.get(subscription_id=body["id"])
    assert (invoice.status, invoice.total, invoice.billing_reason) == (
        "paid",
        1000,
        "subscription_start",
    )
    assert invoice.period_start == START
    payment = Payment.objects.get(invoice=invoice)
    assert (payment.amount, payment.status) == (1000, "completed")
    items = SubscriptionItem.objects.filter(subscription_id=body["id"]).order_by("item_type")
    assert [(i.item_type, i.quantity) for i in items] == [("plan", 1), ("usage", 1)]
    assert WebhookEvent.objects.filter(tenant=tenant, type="subscription.created").count() == 1


def test_declined_card_answers_402_and_leaves_no_active_subscription(
    api, tenant, clock, card_customer, plan_and_price
):
    response = start(api, card_customer, subscription_plan="pro", card_token="tok_card_declined")

    assert response.status_code == 402, response.content
    assert_matches_schema(response, "post", "/api/v1/customers/{customer_id}/subscriptions")
    body = response.json()
    assert body["failure_reason"] == "general_decline"
    assert body["statusCode"] == 402
    subscription = Subscription.objects.get(customer=card_customer)
    assert subscription.status == "cancelled"
    assert subscription.ended_at == START
    assert subscription.metadata["cancellation_reason"] == "first_payment_failed"
    invoice = Invoice.objects.get(subscription=subscription)
    assert invoice.status == "void"
    active = api.get(f"/api/v1/customers/{card_customer.id}/subscriptions/active").json()
    assert active["data"] == []


def test_invoice_customer_gets_an_open_invoice_with_due_date(
    api, tenant, clock, invoice_customer, plan_and_price
):
    response = start(api, invoice_customer, subscription_plan="pro")

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "active"
    invoice = Invoice.objects.get(subscription_id=response.json()["id"])
    assert (invoice.status, invoice.total, invoice.amount_due) == ("open", 1000, 1000)
    assert invoice.due_date == dt.date(2026, 1, 15)
    assert not Payment.objects.exists()


def test_start_by_schedule_and_currency_and_seats(api, clock, invoice_customer, seat_plan):
    plan, _ = seat_plan
    response = start(
        api,
        invoice_customer,
        subscription_plan=str(plan.id),
        schedule="month",
        currency="EUR",
        seat_number=3,
    )
    assert response.status_code == 201, response.content
    assert response.json()["seat_number"] == 3
    assert Invoice.objects.get(subscription_id=response.json()["id"]).total == 3000


def test_card_customer_without_payment_method_is_400(api, clock, card_customer, plan_and_price):
    response = start(api, card_customer, subscription_plan="pro")
    assert response.status_code == 400
    assert "payment_method" in response.json()["errors"]
    assert not Subscription.objects.exists()


def test_unknown_plan_is_400_and_unknown_customer_404(
    api, other_api, clock, card_customer, plan_and_price
):
    response = start(api, card_customer, subscription_plan="nope", card_token="tok_visa")
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "subscription_plan": ["subscription_plan is not a known plan id or code_name"]
    }
    response = start(other_api, card_customer, subscription_plan="pro", card_token="tok_visa")
    assert response.status_code == 404


def test_customer_subscription_lists(api, clock, invoice_customer, plan_and_price):
    first = start(api, invoice_customer, subscription_plan="pro").json()
    api.post(f"/api/v1/subscriptions/{first['id']}/cancel", {"when": "instantly"}, format="json")
    second = start(api, invoice_customer, subscription_plan="pro").json()

    everything = api.get(f"/api/v1/customers/{invoice_customer.id}/subscriptions")
    assert_matches_schema(everything, "get", "/api/v1/customers/{customer_id}/subscriptions")
    assert [s["id"] for s in everything.json()["data"]] == [first["id"], second["id"]]
    active = api.get(f"/api/v1/customers/{invoice_customer.id}/subscriptions/active")
    assert_matches_schema(active, "get", "/api/v1/customers/{customer_id}/subscriptions/active")
    assert [s["id"] for s in active.json()["data"]] == [second["id"]]
