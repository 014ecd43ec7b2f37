"""Namespace payment methods with roles, charging with fallback, add-ons, and the namespace's
invoices and subscriptions."""

import base64

import pytest
import time_machine

from invoicing import services as invoicing_services
from invoicing.models import PaymentMethod
from subscriptions import services as subscription_services
from subscriptions.models import SubscriptionItem
from tests.factories import CustomerFactory
from tests.openapi import assert_error_body, assert_matches_schema
from tests.subscriptions.conftest import MID, START
from tests.subscriptions.factories import make_plan

pytestmark = pytest.mark.django_db

PMS = "/api/v1/namespaces/{ns}/billing/payment_methods"


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def customer(tenant):
    return CustomerFactory(tenant=tenant, email="cards@example.com")


def _add(api, customer, role, token="tok_visa"):
    response = api.post(
        PMS.format(ns=customer.default_namespace.name),
        {"role": role, "token": token, "contact": {"email": "billing@example.com"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert_matches_schema(response, "post", PMS)
    return response.json()["name"]


def _roles(customer):
    return dict(
        PaymentMethod.objects.filter(customer=customer, deleted_at__isnull=True).values_list(
            "name", "role"
        )
    )


def _role_action(api, customer, name, action):
    return api.post(
        f"/api/v1/namespaces/{customer.default_namespace.name}/billing/payment_method/{name}/{action}"
    )


def test_the_contact_is_kept_with_the_card(api, customer):
    name = _add(api, customer, "PRIMARY")

    assert PaymentMethod.objects.get(name=name).contact == {"email": "billing@example.com"}


def test_roles_primary_secondary_and_swap(api, customer):
    first = _add(api, customer, "PRIMARY")
    second = _add(api, customer, "SECONDARY")
    third = _add(api, customer, "NORMAL")
    assert _roles(customer) == {first: "PRIMARY", second: "SECONDARY", third: "NORMAL"}
    assert PaymentMethod.objects.get(name=first).default

    swapped = _role_action(api, customer, second, "swap-primary")
    assert swapped.status_code == 200
    assert_matches_schema(
        swapped, "post", "/api/v1/namespaces/{ns}/billing/payment_method/{name}/swap-primary"
    )
    assert swapped.json() == {"name": second, "role": "PRIMARY"}
    assert _roles(customer) == {first: "SECONDARY", second: "PRIMARY", third: "NORMAL"}
    assert PaymentMethod.objects.get(name=second).default

    assert _role_action(api, customer, third, "secondary").json()["role"] == "SECONDARY"
    assert _roles(customer) == {first: "NORMAL", second: "PRIMARY", third: "SECONDARY"}
    assert_error_body(_role_action(api, customer, second, "secondary"), 409)
    assert_error_body(_role_action(api, customer, first, "swap-primary"), 409)

    assert _role_action(api, customer, first, "primary").json()["role"] == "PRIMARY"
    assert _roles(customer) == {first: "PRIMARY", second: "NORMAL", third: "SECONDARY"}

    deleted = api.delete(f"{PMS.format(ns=customer.default_namespace.name)}/{first}")
    assert deleted.status_code == 204
    assert _roles(customer) == {second: "NORMAL", third: "PRIMARY"}
    assert_error_body(_role_action(api, customer, first, "primary"), 404)


def test_a_refused_token_and_other_tenants_are_refused(api, other_api, customer):
    url = PMS.format(ns=customer.default_namespace.name)
    assert_error_body(api.post(url, {"role": "PRIMARY"}, format="json"), 400, errors=True)
    assert_error_body(
        api.post(url, {"role": "BOSS", "token": "tok_visa"}, format="json"), 400, errors=True
    )
    assert_error_body(other_api.post(url, {"token": "tok_visa"}, format="json"), 404)
    name = _add(api, customer, "PRIMARY")
    assert_error_body(other_api.delete(f"{url}/{name}"), 404)
    assert_error_body(_role_action(other_api, customer, name, "primary"), 404)


def test_a_failing_primary_card_falls_back_to_the_secondary(api, tenant, customer, clock):
    invoice_customer = customer
    _add(api, invoice_customer, "PRIMARY", token="tok_card_declined")
    secondary = _add(api, invoice_customer, "SECONDARY", token="tok_visa")
    invoice = invoicing_services.invoice_issue(
        customer=invoice_customer,
        currency="EUR",
        lines=[invoicing_services.LineDraft(description="Fee", kind="one_off", amount=1500)],
        billing_reason="manual",
    )
    result = invoicing_services.invoice_charge_with_fallback(invoice=invoice)
    assert result.paid is True
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    payments = list(
        invoice.payments.order_by("created_at", "id").values_list("status", "payment_method__name")
    )
    assert [status for status, _ in payments] == ["failed", "completed"]
    assert payments[1][1] == secondary
    # Charging again never charges twice.
    again = invoicing_services.invoice_charge_with_fallback(invoice=invoice)
    assert again.paid is True
    assert invoice.payments.count() == 2


def test_add_ons_subscribe_and_unsubscribe(api, tenant, clock):
    basic, _ = make_plan(tenant, amount=1000, code_name="basic")
    make_plan(tenant, amount=300, code_name="backup", is_addon=True)
    customer = CustomerFactory(tenant=tenant, email="addons@example.com", billing_type="invoice")
    subscription = subscription_services.subscription_start(customer=customer, plan=basic)
    ns = customer.default_namespace.name
    clock.move_to(MID)

    subscribed = api.post(
        f"/api/v1/namespaces/{ns}/addon/subscribe", {"addon": "backup"}, format="json"
    )
    assert subscribed.status_code == 200, subscribed.content
    assert_matches_schema(subscribed, "post", "/api/v1/namespaces/{ns}/addon/subscribe")
    assert subscribed.json() == {
        "addon": "backup",
        "subscribed": True,
        "subscription": str(subscription.pk),
    }
    again = api.post(f"/api/v1/namespaces/{ns}/addon/subscribe", {"addon": "backup"}, format="json")
    assert again.status_code == 200
    assert again.json() == subscribed.json()
    assert (
        SubscriptionItem.objects.filter(subscription=subscription, item_type="addon").count() == 1
    )

    listed = api.get(f"/api/v1/namespaces/{ns}/subscriptions/custom_list")
    assert_matches_schema(listed, "get", "/api/v1/namespaces/{ns}/subscriptions/custom_list")
    assert listed.json()["subscriptions"][0]["addons"] == ["backup"]

    unsubscribed = api.post(
        f"/api/v1/namespaces/{ns}/addon/unsubscribe", {"addon": "backup"}, format="json"
    )
    assert unsubscribed.status_code == 200
    assert_matches_schema(unsubscribed, "post", "/api/v1/namespaces/{ns}/addon/unsubscribe")
    assert unsubscribed.json() == {
        "addon": "backup",
        "subscribed": False,
        "subscription": str(subscription.pk),
    }
    assert (
        api.get(f"/api/v1/namespaces/{ns}/subscriptions/custom_list").json()["subscriptions"][0][
            "addons"
        ]
        == []
    )
    assert_error_body(
        api.post(f"/api/v1/namespaces/{ns}/addon/subscribe", {"addon": "basic"}, format="json"),
        400,
        errors=True,
    )


def test_invoices_pdf_and_previous_billing_periods(api, tenant, clock):
    from invoicing.engine import billing_run

    basic, _ = make_plan(tenant, amount=1000, code_name="basic")
    customer = CustomerFactory(tenant=tenant, email="periods@example.com", billing_type="invoice")
    subscription = subscription_services.subscription_start(customer=customer, plan=basic)
    ns = customer.default_namespace.name
    billing_run(at=subscription.valid_until)
    clock.move_to(subscription.valid_until)

    invoices = api.get(f"/api/v1/namespaces/{ns}/usage/invoices/custom_list")
    assert invoices.status_code == 200
    assert_matches_schema(invoices, "get", "/api/v1/namespaces/{ns}/usage/invoices/custom_list")
    rows = invoices.json()["invoices"]
    assert [(r["period_start"], r["amount"], r["active"]) for r in rows] == [
        ("2026-02-01T00:00:00Z", 1000, True),
        ("2026-01-01T00:00:00Z", 1000, False),
    ]

    pdf = api.get(f"/api/v1/namespaces/{ns}/usage/invoice_pdf?name={rows[0]['name']}")
    assert pdf.status_code == 200
    assert_matches_schema(pdf, "get", "/api/v1/namespaces/{ns}/usage/invoice_pdf")
    assert base64.b64decode(pdf.json()["pdf"]).startswith(b"%PDF")
    assert_error_body(api.get(f"/api/v1/namespaces/{ns}/usage/invoice_pdf?name=nope"), 404)
    assert_error_body(api.get(f"/api/v1/namespaces/{ns}/usage/invoice_pdf"), 400)

    subscriptions = api.get(f"/api/v1/namespaces/{ns}/subscriptions/custom_list").json()
    assert subscriptions["subscriptions"][0]["previous_billing_periods"] == [
        {
            "period_start": "2026-01-01T00:00:00Z",
            "period_end": "2026-02-01T00:00:00Z",
            "invoice": rows[1]["name"],
        }
    ]
