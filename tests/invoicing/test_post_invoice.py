"""`post_invoice` items (API: "charged like `unit` but on its own invoice issued after the period
closes"): at a renewal the closed period's post_invoice usage goes on an invoice of its own
(billing_reason post_invoice), charged like the renewal invoice, never on the renewal invoice,
and at most once per subscription and closed period."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from invoicing import services
from invoicing.engine import billing_run
from invoicing.models import Invoice, Payment
from invoicing.services import DuplicatePeriodInvoice, LineDraft
from subscriptions.models import Subscription
from tests.invoicing.factories import (
    METERED_ANCHOR,
    METERED_FIRST_END,
    invoice_webhooks,
    make_card,
    metered_subscription,
    race_run_billing,
    usage_lines,
)
from tests.openapi import assert_matches_schema
from tests.usage.factories import (
    add_metered_item,
    event,
    ingest,
    make_customer,
    make_metric,
    make_subscription,
)
from tests.utils import postgresql_only
from usage.models import UsageEvent
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

UTC = dt.UTC
ROOT = Path(__file__).resolve().parents[2]
ANCHOR, END = METERED_ANCHOR, METERED_FIRST_END  # END: the first period's end (the renewal)
NEXT_END = dt.datetime(2026, 5, 1, 10, 30, tzinfo=UTC)


def _renew(at):
    with time_machine.travel(at, tick=False):
        return billing_run(at=at)


@pytest.fixture
def subscription(card_customer):
    subscription = metered_subscription(card_customer, post_invoice_price="0.333")
    with time_machine.travel(END - dt.timedelta(minutes=1), tick=False):
        ingest(
            card_customer.tenant,
            event(subscription, "api_calls", 10, at=ANCHOR + dt.timedelta(minutes=1)),
            event(subscription, "api_calls", 5, at=END - dt.timedelta(seconds=1)),
            event(subscription, "storage_gb", 1200, at=ANCHOR + dt.timedelta(days=2)),
            event(subscription, "storage_gb", 34.5, at=END - dt.timedelta(hours=3)),
            # Sent early (inside the 5-minute lead): it belongs to the new period.
            event(subscription, "storage_gb", 100, at=END + dt.timedelta(minutes=2)),
        )
    return subscription


def test_post_invoice_usage_goes_on_its_own_invoice_charged_like_the_renewal(subscription):
    report = _renew(END)
    assert (report.renewals, report.invoices, report.charges, report.charges_failed) == (
        1,
        2,
        2,
        0,
    ), report.set_aside

    renewal = Invoice.objects.get(subscription=subscription, billing_reason="renewal")
    post = Invoice.objects.get(subscription=subscription, billing_reason="post_invoice")

    # The renewal: the new period's fee in advance and the unit usage in arrears, no storage.
    assert (renewal.period_start, renewal.period_end) == (END, NEXT_END)
    # 15 calls x 2.5 = 37.5 -> 38; tax 19%: 7.22 -> 7.
    assert usage_lines(renewal) == [("api_calls", Decimal(15), Decimal("2.5"), 38, 7)]
    assert (renewal.sub_total, renewal.tax_total, renewal.total) == (1038, 197, 1235)

    # The post_invoice invoice: the closed period's storage only. 1234.5 x 0.333 = 411.0885 ->
    # 411; tax 19%: 78.09 -> 78.
    assert (post.period_start, post.period_end) == (ANCHOR, END)
    assert post.customer_id == subscription.customer_id and post.currency == "EUR"
    assert usage_lines(post) == [("storage_gb", Decimal("1234.5"), Decimal("0.333"), 411, 78)]
    assert post.lines.count() == 1
    line = post.lines.get()
    assert (line.period_start, line.period_end, line.tax_rate) == (ANCHOR, END, Decimal(19))
    assert line.description.endswith("Storage (units)")
    assert (post.sub_total, post.tax_total, post.total) == (411, 78, 489)

    # Gapless numbers: the renewal's, then the post_invoice invoice's.
    assert (renewal.number, post.number) == ("INV-000001", "INV-000002")

    # Both charged on the card at once and paid, each with its own payment keyed by its id.
    for invoice, amount in ((renewal, 1235), (post, 489)):
        assert (invoice.status, invoice.paid, invoice.amount_due) == ("paid", True, 0)
        assert invoice.paid_at == END and invoice.attempt_count == 1
        assert list(
            invoice.payments.values_list("status", "amount", "currency", "idempotency_key")
        ) == [("completed", amount, "EUR", str(invoice.pk))]
        assert invoice.payments.get().receipts.count() == 1

    # Each event is billed by the invoice that carries it.
    assert sorted(
        UsageEvent.objects.filter(subscription=subscription).values_list(
            "code", "value", "renewal_order_reference"
        )
    ) == [
        ("api_calls", Decimal(5), "INV-000001"),
        ("api_calls", Decimal(10), "INV-000001"),
        ("storage_gb", Decimal("34.5"), "INV-000002"),
        ("storage_gb", Decimal(100), None),
        ("storage_gb", Decimal(1200), "INV-000002"),
    ]

    # The webhooks of an issued and paid invoice, as for the renewal.
    assert invoice_webhooks("post_invoice") == [
        ("invoice.created", "open", 489),
        ("invoice.finalised", "open", 489),
        ("invoice.paid", "paid", 489),
    ]
    assert WebhookEvent.objects.filter(
        type="payment.succeeded", data__invoice=str(post.pk), data__amount=489
    ).exists()

    subscription.refresh_from_db()
    assert (subscription.period_index, subscription.status) == (1, "active")

    # Running the same instant again bills nothing twice.
    snapshot = list(Invoice.objects.order_by("id").values_list("id", "number", "status", "total"))
    again = _renew(END)
    assert (again.renewals, again.invoices, again.charges) == (0, 0, 0)
    assert (
        list(Invoice.objects.order_by("id").values_list("id", "number", "status", "total"))
        == snapshot
    )
    assert Payment.objects.count() == 2


def test_the_next_period_gets_its_own_post_invoice_with_late_events(subscription, card_customer):
    _renew(END)
    # A day after the renewal, a late event of the closed period and one of the new period.
    with time_machine.travel(END + dt.timedelta(days=1), tick=False):
        ingest(
            card_customer.tenant,
            event(subscription, "storage_gb", 7, at=END - dt.timedelta(days=2)),
            event(subscription, "storage_gb", 3, at=END + dt.timedelta(hours=5)),
        )
    report = _renew(NEXT_END)
    assert (report.renewals, report.invoices) == (1, 2), report.set_aside
    second = Invoice.objects.get(
        subscription=subscription, billing_reason="post_invoice", period_start=END
    )
    assert second.period_end == NEXT_END
    # 100 (sent early) + 3 + the late 7 = 110 x 0.333 = 36.63 -> 37; tax 7.03 -> 7.
    assert usage_lines(second) == [("storage_gb", Decimal(110), Decimal("0.333"), 37, 7)]
    assert (second.total, second.status, second.number) == (44, "paid", "INV-000004")
    renewal = Invoice.objects.get(subscription=subscription, period_start=NEXT_END)
    assert (renewal.billing_reason, renewal.number, usage_lines(renewal)) == (
        "renewal",
        "INV-000003",
        [],
    )
    assert UsageEvent.objects.filter(renewal_order_reference="INV-000004").count() == 3
    assert not UsageEvent.objects.filter(renewal_order_reference__isnull=True).exists()
    assert (
        Invoice.objects.filter(subscription=subscription, billing_reason="post_invoice").count()
        == 2
    )


def test_zero_post_invoice_usage_issues_no_post_invoice(card_customer):
    subscription = metered_subscription(card_customer, post_invoice_price="0.333")
    with time_machine.travel(END - dt.timedelta(minutes=1), tick=False):
        ingest(
            card_customer.tenant,
            event(subscription, "api_calls", 4, at=ANCHOR + dt.timedelta(days=1)),
            # Storage reported, but none used: zero usage, so no invoice for it.
            event(subscription, "storage_gb", 0, at=ANCHOR + dt.timedelta(days=1)),
        )
    report = _renew(END)
    assert (report.renewals, report.invoices, report.charges) == (1, 1, 1)
    renewal = Invoice.objects.get(subscription=subscription)
    assert renewal.billing_reason == "renewal"
    assert usage_lines(renewal) == [("api_calls", Decimal(4), Decimal("2.5"), 10, 2)]
    assert (renewal.total, renewal.status) == (1202, "paid")
    assert not Invoice.objects.filter(billing_reason="post_invoice").exists()
    # Nothing of it is left unbilled to come back as late usage.
    assert set(UsageEvent.objects.values_list("renewal_order_reference", flat=True)) == {
        renewal.number
    }
    assert _renew(END).invoices == 0


def test_no_post_invoice_usage_at_all_issues_no_post_invoice(card_customer):
    subscription = metered_subscription(card_customer, post_invoice_price="0.333")
    assert _renew(END).invoices == 1
    assert list(Invoice.objects.values_list("subscription_id", "billing_reason", "total")) == [
        (subscription.pk, "renewal", 1190)
    ]


def test_invoice_customers_get_both_invoices_open_with_their_terms(tenant):
    with time_machine.travel(ANCHOR, tick=False):
        customer = make_customer(tenant, billing_type="invoice")
    subscription = metered_subscription(customer, post_invoice_price="12")
    with time_machine.travel(END - dt.timedelta(minutes=1), tick=False):
        ingest(tenant, event(subscription, "storage_gb", 3, at=ANCHOR + dt.timedelta(days=3)))
    report = _renew(END)
    assert (report.invoices, report.charges) == (2, 0)
    post = Invoice.objects.get(billing_reason="post_invoice")
    renewal = Invoice.objects.get(billing_reason="renewal")
    assert usage_lines(renewal) == []
    # No tax rate of the customer's own: the tenant's country rules or default (as the renewal).
    assert post.lines.get().tax_rate == renewal.lines.get(kind="subscription").tax_rate
    assert post.sub_total == 36
    for invoice in (renewal, post):
        assert (invoice.status, invoice.paid, invoice.amount_due) == ("open", False, invoice.total)
        assert invoice.due_date == (END + dt.timedelta(days=tenant.payment_terms_days)).date()
    assert not Payment.objects.exists()


def test_a_declined_post_invoice_goes_to_dunning_like_the_renewal(tenant):
    tenant.dunning_retry_days = [1, 3]
    tenant.save()
    with time_machine.travel(ANCHOR, tick=False):
        customer = make_customer(tenant)
        make_card(customer, "tok_insufficient_funds")
    subscription = metered_subscription(customer, post_invoice_price="10")
    with time_machine.travel(END - dt.timedelta(minutes=1), tick=False):
        ingest(tenant, event(subscription, "storage_gb", 2, at=ANCHOR + dt.timedelta(days=3)))
    report = _renew(END)
    assert (report.charges, report.charges_failed) == (2, 2)
    post = Invoice.objects.get(billing_reason="post_invoice")
    assert (post.status, post.total, post.amount_due, post.attempt_count) == ("open", 20, 20, 1)
    assert post.next_attempt_at == END + dt.timedelta(days=1)
    assert list(post.payments.values_list("status", "amount", "failure_reason")) == [
        ("failed", 20, "lack_of_funds")
    ]
    subscription.refresh_from_db()
    assert subscription.status == "overdue_payment_open"

    # The retry pays both once a good card is on file.
    with time_machine.travel(END, tick=False):
        make_card(customer, "tok_visa")
    retried = _renew(END + dt.timedelta(days=1))
    assert retried.dunning_retries == 2
    post.refresh_from_db()
    assert (post.status, post.amount_due) == ("paid", 0)
    assert post.payments.filter(status="completed").get().amount == 20
    subscription.refresh_from_db()
    assert subscription.status == "active"


def test_the_post_invoice_is_listed_by_the_api(api, subscription):
    _renew(END)
    post = Invoice.objects.get(billing_reason="post_invoice")
    listed = api.get("/api/v1/invoices", {"subscription": str(subscription.pk)})
    assert listed.status_code == 200
    assert_matches_schema(listed, "get", "/api/v1/invoices")
    by_reason = {i["billing_reason"]: i for i in listed.json()["data"]}
    assert set(by_reason) == {"renewal", "post_invoice"}
    body = by_reason["post_invoice"]
    assert (body["id"], body["number"], body["status"]) == (str(post.pk), "INV-000002", "paid")
    assert (body["sub_total"], body["tax_total"], body["total"], body["amount_due"]) == (
        411,
        78,
        489,
        0,
    )
    assert [(line["kind"], line["quantity"], line["sub_total"]) for line in body["lines"]] == [
        ("usage", "1234.5", 411)
    ]
    response = api.get(f"/api/v1/invoices/{post.pk}")
    assert_matches_schema(response, "get", "/api/v1/invoices/{id}")
    detail = response.json()
    assert detail["billing_reason"] == "post_invoice"
    assert (detail["period_start"], detail["period_end"]) == (
        "2026-03-01T10:30:00Z",
        "2026-04-01T10:30:00Z",
    )


# --- One per subscription and closed period, by the database ----------------------------------


def _post_invoice(subscription, period_start, period_end):
    return services.invoice_issue(
        customer=subscription.customer,
        currency="EUR",
        lines=[LineDraft("Storage", "usage", 100)],
        subscription=subscription,
        period_start=period_start,
        period_end=period_end,
        billing_reason="post_invoice",
        at=END,
    )


def test_the_database_allows_one_post_invoice_per_subscription_period(card_customer):
    subscription = metered_subscription(card_customer, post_invoice_price="0.333")
    first = _post_invoice(subscription, ANCHOR, END)
    # A renewal or start invoice with the same period_start does not collide with it.
    services.invoice_issue(
        customer=card_customer,
        currency="EUR",
        lines=[LineDraft("Fee", "subscription", 1000)],
        subscription=subscription,
        period_start=ANCHOR,
        period_end=END,
        billing_reason="subscription_start",
        at=END,
    )
    with pytest.raises(DuplicatePeriodInvoice) as raised:
        _post_invoice(subscription, ANCHOR, END)
    assert raised.value.invoice == first
    duplicate = Invoice(
        tenant_id=first.tenant_id,
        customer_id=first.customer_id,
        subscription=subscription,
        billing_reason="post_invoice",
        currency="EUR",
        period_start=ANCHOR,
        period_end=END,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save(force_insert=True)
    # Another period is another invoice.
    assert _post_invoice(subscription, END, NEXT_END).number == "INV-000003"


def test_a_post_invoice_already_issued_for_the_period_is_not_issued_again(subscription):
    # As if another worker had issued it: the engine sees it and does not try again.
    existing = _post_invoice(subscription, ANCHOR, END)
    report = _renew(END)
    assert (report.renewals, report.invoices) == (1, 1), report.set_aside
    assert list(Invoice.objects.filter(billing_reason="post_invoice")) == [existing]
    assert Invoice.objects.get(billing_reason="renewal").number == "INV-000002"


# --- The batch's queries ---------------------------------------------------------------------


def _renewal_queries(tenant, plain: int, *, anchor) -> int:
    """Queries of one renewal run over `plain` subscriptions without post_invoice items and one
    with post_invoice usage."""
    end = anchor + (END - ANCHOR)
    with time_machine.travel(anchor, tick=False):
        for _ in range(plain):
            customer = make_customer(tenant)
            make_card(customer, "tok_visa")
            make_subscription(customer, anchor=anchor)
        customer = make_customer(tenant)
        make_card(customer, "tok_visa")
        with_post = make_subscription(customer, anchor=anchor)
    storage = make_metric(tenant, None, "sum")
    add_metered_item(
        with_post, storage, calc_rule_type="post_invoice", pricing={"money_value": "3"}
    )
    with time_machine.travel(end - dt.timedelta(minutes=1), tick=False):
        ingest(tenant, event(with_post, storage.code, 5, at=anchor + dt.timedelta(days=1)))
    with time_machine.travel(end, tick=False), CaptureQueriesContext(connection) as queries:
        report = billing_run(at=end)
    assert (report.renewals, report.invoices) == (plain + 1, plain + 2), report.set_aside
    return len(queries)


def test_subscriptions_without_post_invoice_items_cost_no_query_each(tenant):
    # The first run also creates the tenant's invoice number sequence.
    _renewal_queries(tenant, 1, anchor=ANCHOR)
    more = _renewal_queries(tenant, 6, anchor=ANCHOR + dt.timedelta(days=1))
    fewer = _renewal_queries(tenant, 2, anchor=ANCHOR + dt.timedelta(days=2))
    assert more == fewer


# --- PostgreSQL concurrency --------------------------------------------------------------------


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_two_billing_processes_racing_issue_one_post_invoice_per_period(tenant):
    subscriptions = []
    with time_machine.travel(ANCHOR, tick=False):
        customers = [make_customer(tenant) for _ in range(5)]
        for customer in customers:
            make_card(customer)
    storage = make_metric(tenant, "storage_gb", "sum")
    for i in range(30):
        with time_machine.travel(ANCHOR, tick=False):
            subscription = make_subscription(customers[i % 5], anchor=ANCHOR)
        add_metered_item(
            subscription, storage, calc_rule_type="post_invoice", pricing={"money_value": "2"}
        )
        subscriptions.append(subscription)
    with time_machine.travel(END - dt.timedelta(minutes=1), tick=False):
        ingest(
            tenant,
            *[event(s, "storage_gb", 10, at=ANCHOR + dt.timedelta(days=1)) for s in subscriptions],
        )
    race_run_billing(END, batch_size=4)
    posts = Invoice.objects.filter(billing_reason="post_invoice")
    assert posts.count() == 30
    assert posts.values("subscription").distinct().count() == 30
    assert set(posts.values_list("total", "status")) == {(20, "paid")}
    assert Invoice.objects.filter(billing_reason="renewal").count() == 30
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-{n:06d}" for n in range(1, 61)]
    assert Payment.objects.filter(status="completed").count() == 60
    assert set(Subscription.objects.values_list("period_index", flat=True)) == {1}
    billed = UsageEvent.objects.values_list("renewal_order_reference", flat=True)
    assert set(billed) == set(posts.values_list("number", flat=True))
