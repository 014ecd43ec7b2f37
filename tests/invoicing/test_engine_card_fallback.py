"""The billing engine's charges fall back from a namespace's primary card to its secondary card
(seed 003): renewals and dunning retries, as invoicing.services.invoice_charge_with_fallback."""

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from invoicing.engine import billing_run
from invoicing.models import Invoice, Payment
from quotas.services import namespace_payment_method_create
from tests.invoicing.factories import make_card, make_customer, make_subscription
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

UTC = dt.UTC
ANCHOR = dt.datetime(2027, 1, 1, tzinfo=UTC)
RENEWAL = dt.datetime(2027, 2, 1, tzinfo=UTC)
PAYMENT_EVENTS = ("invoice.payment_failed", "invoice.paid", "payment.succeeded")


def run(at: dt.datetime):
    with time_machine.travel(at, tick=False):
        return billing_run(at=at)


def card(customer, role: str, token: str):
    return namespace_payment_method_create(
        namespace=customer.default_namespace, role=role, token=token
    )


@pytest.fixture
def customer(tenant):
    tenant.dunning_retry_days = [1, 3]
    tenant.save()
    return make_customer(tenant, standard_tax_rate=Decimal("19"))


@pytest.fixture
def subscription(customer):
    return make_subscription(customer, anchor=ANCHOR, amount=1999)


def attempts(invoice) -> list[tuple]:
    return list(
        invoice.payments.order_by("created_at", "id").values_list(
            "status", "payment_method_id", "amount", "failure_reason", "idempotency_key"
        )
    )


def payment_events() -> list[tuple]:
    return [
        (event.type, event.data["status"], event.data.get("failure_reason"))
        for event in WebhookEvent.objects.filter(type__in=PAYMENT_EVENTS).order_by(
            "created_at", "id"
        )
    ]


def test_a_renewal_declined_on_the_primary_card_is_paid_with_the_secondary(customer, subscription):
    primary = card(customer, "PRIMARY", "tok_card_declined")
    secondary = card(customer, "SECONDARY", "tok_visa")
    card(customer, "NORMAL", "tok_mastercard")

    report = run(RENEWAL)

    assert (report.renewals, report.invoices, report.charges, report.charges_failed) == (
        1,
        1,
        2,
        1,
    )
    invoice = Invoice.objects.get()
    assert (invoice.sub_total, invoice.tax_total, invoice.total) == (1999, 380, 2379)
    assert (invoice.status, invoice.paid, invoice.amount_due) == ("paid", True, 0)
    assert invoice.paid_at == RENEWAL and invoice.next_attempt_at is None
    # The fallback belongs to the renewal's charge: it is not a dunning attempt.
    assert invoice.attempt_count == 1
    assert attempts(invoice) == [
        ("failed", primary.pk, 2379, "general_decline", str(invoice.pk)),
        ("completed", secondary.pk, 2379, None, f"{invoice.pk}:fallback"),
    ]
    assert Payment.objects.get(status="completed").receipts.count() == 1
    subscription.refresh_from_db()
    assert subscription.status == "active"
    assert payment_events() == [
        ("invoice.payment_failed", "open", "general_decline"),
        ("invoice.paid", "paid", None),
        ("payment.succeeded", "completed", None),
    ]

    # Running the same instant again charges nothing.
    assert run(RENEWAL).charges == 0
    assert Payment.objects.count() == 2


def test_a_dunning_retry_falls_back_to_the_secondary_card(customer, subscription):
    primary = card(customer, "PRIMARY", "tok_insufficient_funds")
    run(RENEWAL)
    invoice = Invoice.objects.get()
    assert invoice.status == "open" and invoice.next_attempt_at == RENEWAL + dt.timedelta(days=1)
    subscription.refresh_from_db()
    assert subscription.status == "overdue_payment_open"

    secondary = card(customer, "SECONDARY", "tok_visa")
    report = run(RENEWAL + dt.timedelta(days=1))

    assert (report.dunning_retries, report.charges_failed) == (1, 1)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid, invoice.amount_due, invoice.total) == (
        "paid",
        True,
        0,
        2379,
    )
    assert invoice.next_attempt_at is None
    assert attempts(invoice) == [
        ("failed", primary.pk, 2379, "lack_of_funds", str(invoice.pk)),
        ("failed", primary.pk, 2379, "lack_of_funds", f"{invoice.pk}:1"),
        ("completed", secondary.pk, 2379, None, f"{invoice.pk}:1:fallback"),
    ]
    subscription.refresh_from_db()
    assert subscription.status == "active"
    assert payment_events() == [
        ("invoice.payment_failed", "open", "lack_of_funds"),
        ("invoice.payment_failed", "open", "lack_of_funds"),
        ("invoice.paid", "paid", None),
        ("payment.succeeded", "completed", None),
    ]


def test_when_both_cards_are_declined_dunning_runs_on_its_usual_days(customer, subscription):
    primary = card(customer, "PRIMARY", "tok_card_declined")
    secondary = card(customer, "SECONDARY", "tok_expired_card")

    report = run(RENEWAL)
    assert (report.charges, report.charges_failed) == (2, 2)
    invoice = Invoice.objects.get()
    subscription.refresh_from_db()
    assert (invoice.status, invoice.paid, invoice.amount_due) == ("open", False, 2379)
    assert invoice.next_attempt_at == RENEWAL + dt.timedelta(days=1)
    assert subscription.status == "overdue_payment_open"

    assert run(RENEWAL + dt.timedelta(hours=12)).dunning_retries == 0
    assert run(RENEWAL + dt.timedelta(days=1)).dunning_retries == 1
    invoice.refresh_from_db()
    assert invoice.next_attempt_at == RENEWAL + dt.timedelta(days=3)
    assert run(RENEWAL + dt.timedelta(days=3)).dunning_retries == 1
    invoice.refresh_from_db()
    subscription.refresh_from_db()
    assert (invoice.status, invoice.amount_due, invoice.next_attempt_at) == ("open", 2379, None)
    assert subscription.status == "overdue_payment_disabled"
    key = str(invoice.pk)
    assert attempts(invoice) == [
        ("failed", primary.pk, 2379, "general_decline", key),
        ("failed", secondary.pk, 2379, "expired_card", f"{key}:fallback"),
        ("failed", primary.pk, 2379, "general_decline", f"{key}:1"),
        ("failed", secondary.pk, 2379, "expired_card", f"{key}:1:fallback"),
        ("failed", primary.pk, 2379, "general_decline", f"{key}:2"),
        ("failed", secondary.pk, 2379, "expired_card", f"{key}:2:fallback"),
    ]
    assert [event for event, _, _ in payment_events()] == ["invoice.payment_failed"] * 6


def test_a_customer_with_only_normal_cards_is_charged_as_before(customer, subscription):
    declined = card(customer, "NORMAL", "tok_card_declined")
    card(customer, "NORMAL", "tok_visa")

    report = run(RENEWAL)

    assert (report.charges, report.charges_failed) == (1, 1)
    invoice = Invoice.objects.get()
    assert (invoice.status, invoice.amount_due, invoice.attempt_count) == ("open", 2379, 1)
    assert invoice.next_attempt_at == RENEWAL + dt.timedelta(days=1)
    # The first card became the default; nothing falls back from it.
    assert attempts(invoice) == [("failed", declined.pk, 2379, "general_decline", str(invoice.pk))]

    run(RENEWAL + dt.timedelta(days=1))
    invoice.refresh_from_db()
    assert invoice.status == "open"
    assert [(status, method) for status, method, *_ in attempts(invoice)] == [
        ("failed", declined.pk),
        ("failed", declined.pk),
    ]


def _renewal_queries(tenant, customers: int) -> int:
    for _ in range(customers):
        customer = make_customer(tenant)
        make_card(customer, "tok_visa")
        make_subscription(customer, anchor=ANCHOR)
    with CaptureQueriesContext(connection) as queries:
        assert run(RENEWAL).renewals == customers
    return len(queries)


def test_customers_without_namespace_cards_cost_no_query_each(tenant):
    # Which card to fall back to is read with the batch's cards, so a larger batch of customers
    # without a secondary card costs no more queries. The first run also creates the tenant's
    # invoice number sequence; those renewed are not due again.
    _renewal_queries(tenant, 1)
    assert _renewal_queries(tenant, 5) == _renewal_queries(tenant, 2)
