"""A subscription that ends instead of renewing gets a final invoice (billing_reason final_usage)
of its last period's unbilled usage up to the end: at the end of the run (the billing engine), on
an instant cancellation (at once). Charged like the renewal invoice, events marked with its
number, at most once per subscription period, and none when there is no usage."""

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.db import IntegrityError, transaction
from rest_framework.exceptions import ValidationError

from invoicing import engine
from invoicing import services as invoicing_services
from invoicing.engine import BillingRunReport, billing_run
from invoicing.models import Invoice, Payment
from invoicing.services import LineDraft
from subscriptions import services as subscription_services
from tenants.api.errors import Conflict
from tests.invoicing.factories import (
    METERED_ANCHOR,
    METERED_FIRST_END,
    invoice_webhooks,
    make_card,
    metered_subscription,
    usage_lines,
)
from tests.usage.factories import (
    event,
    ingest,
    make_customer,
)
from usage.models import UsageEvent
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

UTC = dt.UTC
ANCHOR, END = METERED_ANCHOR, METERED_FIRST_END  # END: the first period's end
MID = ANCHOR + dt.timedelta(days=10)


def _run(at):
    with time_machine.travel(at, tick=False):
        return billing_run(at=at)


def _cancel(subscription, when, at, **fields):
    with time_machine.travel(at, tick=False):
        return subscription_services.subscription_cancel(
            subscription=subscription, when=when, at=at, **fields
        )


@pytest.fixture
def subscription(card_customer):
    subscription = metered_subscription(card_customer)
    with time_machine.travel(MID, tick=False):
        ingest(
            card_customer.tenant,
            event(subscription, "api_calls", 10, at=ANCHOR + dt.timedelta(minutes=1)),
            event(subscription, "api_calls", 4, at=MID - dt.timedelta(hours=1)),
        )
    return subscription


def test_end_of_run_cancellation_bills_the_last_period_usage_once(subscription, api):
    _cancel(subscription, "end-of-run", MID)
    subscription.refresh_from_db()
    assert (subscription.status, subscription.cancel_at) == ("pending_cancel", END)
    assert not Invoice.objects.filter(subscription=subscription).exists()
    with time_machine.travel(END - dt.timedelta(minutes=1), tick=False):
        ingest(
            subscription.tenant,
            event(subscription, "api_calls", 5, at=END - dt.timedelta(seconds=1)),
        )

    report = _run(END)
    assert (report.cancellations, report.renewals, report.invoices) == (1, 0, 1), report.set_aside
    assert (report.charges, report.charges_failed) == (1, 0)

    final = Invoice.objects.get(subscription=subscription)
    assert final.billing_reason == "final_usage"
    assert (final.period_start, final.period_end) == (ANCHOR, END)
    # 19 calls x 2.5 = 47.5 -> 48; tax 19%: 9.12 -> 9.
    assert usage_lines(final) == [("api_calls", Decimal(19), Decimal("2.5"), 48, 9)]
    assert (final.sub_total, final.tax_total, final.total) == (48, 9, 57)
    assert final.number == "INV-000001"
    assert (final.status, final.paid, final.amount_due, final.paid_at) == ("paid", True, 0, END)
    assert list(final.payments.values_list("status", "amount", "currency", "idempotency_key")) == [
        ("completed", 57, "EUR", str(final.pk))
    ]

    assert sorted(
        UsageEvent.objects.filter(subscription=subscription).values_list(
            "value", "renewal_order_reference"
        )
    ) == [(Decimal(4), "INV-000001"), (Decimal(5), "INV-000001"), (Decimal(10), "INV-000001")]
    assert invoice_webhooks("final_usage") == [
        ("invoice.created", "open", 57),
        ("invoice.finalised", "open", 57),
        ("invoice.paid", "paid", 57),
    ]
    assert WebhookEvent.objects.filter(
        type="payment.succeeded", data__invoice=str(final.pk), data__amount=57
    ).exists()
    subscription.refresh_from_db()
    assert (subscription.status, subscription.ended_at) == ("cancelled", END)

    # Re-running the engine (same instant, later) adds nothing.
    for at in (END, END + dt.timedelta(days=40)):
        again = _run(at)
        assert (again.cancellations, again.invoices, again.charges) == (0, 0, 0)
    assert Invoice.objects.filter(subscription=subscription).count() == 1
    assert Payment.objects.count() == 1

    # The database refuses a second final invoice of the same period.
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.create(
            tenant=subscription.tenant,
            customer=subscription.customer,
            subscription=subscription,
            billing_reason="final_usage",
            currency="EUR",
            period_start=ANCHOR,
        )

    # Visible in the API with its billing_reason.
    response = api.get("/api/v1/invoices")
    assert response.status_code == 200
    rows = response.json()["data"] if "data" in response.json() else response.json()["results"]
    assert [(r["number"], r["billing_reason"], r["total"], r["status"]) for r in rows] == [
        ("INV-000001", "final_usage", 57, "paid")
    ]


def test_the_renewal_batch_path_bills_a_due_cancellation_too(subscription):
    """A cancellation that comes due between the run's cancellation step and its renewals is
    ended by the renewal batch, with the same final invoice."""
    _cancel(subscription, "end-of-run", MID)
    report = BillingRunReport(at=END)
    with time_machine.travel(END, tick=False):
        engine.renewals_run(at=END, report=report, batch_size=50)
    assert (report.cancellations, report.renewals, report.invoices) == (1, 0, 1), report.set_aside
    assert report.charges == 1
    final = Invoice.objects.get(subscription=subscription)
    # 14 calls x 2.5 = 35; tax 19%: 6.65 -> 7.
    assert (final.billing_reason, final.period_start, final.period_end) == (
        "final_usage",
        ANCHOR,
        END,
    )
    assert (final.sub_total, final.tax_total, final.total, final.status) == (35, 7, 42, "paid")
    assert set(
        UsageEvent.objects.filter(subscription=subscription).values_list(
            "renewal_order_reference", flat=True
        )
    ) == {final.number}
    assert _run(END).invoices == 0
    assert Invoice.objects.filter(subscription=subscription).count() == 1


def test_instant_cancellation_bills_the_usage_up_to_then_at_once(subscription):
    # An event sent early (inside the ingestion lead) for after the cancellation moment.
    with time_machine.travel(MID, tick=False):
        ingest(
            subscription.tenant,
            event(subscription, "api_calls", 100, at=MID + dt.timedelta(minutes=2)),
        )
    cancelled = _cancel(subscription, "instantly", MID)
    assert (cancelled.status, cancelled.ended_at) == ("cancelled", MID)

    final = Invoice.objects.get(subscription=subscription)
    assert (final.billing_reason, final.period_start, final.period_end) == (
        "final_usage",
        ANCHOR,
        MID,
    )
    # 14 calls x 2.5 = 35; tax 19%: 6.65 -> 7. The event after MID is not billed.
    assert usage_lines(final) == [("api_calls", Decimal(14), Decimal("2.5"), 35, 7)]
    assert (final.total, final.status, final.paid) == (42, "paid", True)
    assert list(final.payments.values_list("status", "amount")) == [("completed", 42)]
    assert sorted(
        UsageEvent.objects.filter(subscription=subscription).values_list(
            "value", "renewal_order_reference"
        )
    ) == [(Decimal(4), final.number), (Decimal(10), final.number), (Decimal(100), None)]

    # Events after the cancellation are refused: the subscription is no longer billing.
    with (
        time_machine.travel(MID + dt.timedelta(hours=1), tick=False),
        pytest.raises(ValidationError, match="not billing"),
    ):
        ingest(subscription.tenant, event(subscription, "api_calls", 7))
    assert UsageEvent.objects.filter(subscription=subscription).count() == 3

    # A repeated cancel request is refused and bills nothing; neither does the engine.
    with pytest.raises(Conflict):
        _cancel(subscription, "instantly", MID + dt.timedelta(hours=2))
    assert _run(END).invoices == 0
    assert Invoice.objects.filter(subscription=subscription).count() == 1
    assert Payment.objects.count() == 1


def test_instant_cancellation_of_an_invoice_customer_opens_the_final_invoice(tenant):
    with time_machine.travel(ANCHOR, tick=False):
        customer = make_customer(tenant, billing_type="invoice", standard_tax_rate=Decimal("19"))
    subscription = metered_subscription(customer, post_invoice_price="0.5")
    with time_machine.travel(MID, tick=False):
        ingest(
            tenant,
            event(subscription, "api_calls", 3, at=ANCHOR + dt.timedelta(days=1)),
            event(subscription, "storage_gb", 100, at=ANCHOR + dt.timedelta(days=2)),
        )
    _cancel(subscription, "instantly", MID)
    final = Invoice.objects.get(subscription=subscription, billing_reason="final_usage")
    post = Invoice.objects.get(subscription=subscription, billing_reason="post_invoice")
    # 3 x 2.5 = 7.5 -> 8; tax 1.52 -> 2. Storage on its own invoice: 100 x 0.5 = 50; tax 9.5 -> 10.
    assert usage_lines(final) == [("api_calls", Decimal(3), Decimal("2.5"), 8, 2)]
    assert usage_lines(post) == [("storage_gb", Decimal(100), Decimal("0.5"), 50, 10)]
    for invoice, total in ((final, 10), (post, 60)):
        assert (invoice.period_start, invoice.period_end) == (ANCHOR, MID)
        assert (invoice.status, invoice.total, invoice.amount_due) == ("open", total, total)
        assert invoice.due_date == (MID + dt.timedelta(days=tenant.payment_terms_days)).date()
        assert not invoice.payments.exists()
    assert dict(
        UsageEvent.objects.filter(subscription=subscription).values_list(
            "code", "renewal_order_reference"
        )
    ) == {"api_calls": final.number, "storage_gb": post.number}


@pytest.mark.parametrize("when", ["end-of-run", "instantly", "specific-date"])
def test_no_usage_no_final_invoice(card_customer, when):
    subscription = metered_subscription(card_customer)
    date = (MID + dt.timedelta(days=5)).date()
    _cancel(subscription, when, MID, **({"date": date} if when == "specific-date" else {}))
    report = _run(END)
    subscription.refresh_from_db()
    assert subscription.status == "cancelled"
    assert report.invoices == 0 and report.charges == 0
    assert not Invoice.objects.filter(subscription=subscription).exists()


def test_specific_date_cancellation_bills_up_to_the_date(subscription):
    date = (MID + dt.timedelta(days=5)).date()
    ends = dt.datetime.combine(date, dt.time.min, tzinfo=UTC)
    _cancel(subscription, "specific-date", MID, date=date)
    with time_machine.travel(ends - dt.timedelta(hours=1), tick=False):
        ingest(
            subscription.tenant,
            event(subscription, "api_calls", 6, at=ends - dt.timedelta(hours=2)),
        )
    report = _run(ends)
    assert (report.cancellations, report.invoices, report.charges) == (1, 1, 1), report.set_aside
    final = Invoice.objects.get(subscription=subscription)
    # 20 calls x 2.5 = 50; tax 19%: 9.5 -> 10.
    assert (final.billing_reason, final.period_start, final.period_end) == (
        "final_usage",
        ANCHOR,
        ends,
    )
    assert (final.sub_total, final.tax_total, final.total, final.status) == (50, 10, 60, "paid")
    assert _run(ends).invoices == 0


def _cancel_for_nonpayment(subscription, at, capture):
    with time_machine.travel(at, tick=False), capture(execute=True):
        return subscription_services.subscription_cancel_for_nonpayment(
            subscription=subscription, at=at
        )


def test_a_cancellation_for_nonpayment_bills_the_usage_up_to_then(
    subscription, django_capture_on_commit_callbacks
):
    cancelled = _cancel_for_nonpayment(subscription, MID, django_capture_on_commit_callbacks)
    assert (cancelled.status, cancelled.ended_at) == ("cancelled", MID)
    assert cancelled.metadata["cancellation_reason"] == "nonpayment"

    final = Invoice.objects.get(subscription=subscription)
    assert (final.billing_reason, final.period_start, final.period_end) == (
        "final_usage",
        ANCHOR,
        MID,
    )
    # 14 calls x 2.5 = 35; tax 19%: 6.65 -> 7; charged on the card after the commit.
    assert usage_lines(final) == [("api_calls", Decimal(14), Decimal("2.5"), 35, 7)]
    assert (final.total, final.status) == (42, "paid")
    assert list(final.payments.values_list("status", "amount")) == [("completed", 42)]

    # Dunning giving up twice cancels and bills once.
    _cancel_for_nonpayment(
        subscription, MID + dt.timedelta(hours=1), django_capture_on_commit_callbacks
    )
    assert Invoice.objects.filter(subscription=subscription).count() == 1
    assert Payment.objects.count() == 1


def test_a_declined_final_invoice_stays_open_for_dunning(
    tenant, django_capture_on_commit_callbacks
):
    with time_machine.travel(ANCHOR, tick=False):
        customer = make_customer(tenant, standard_tax_rate=Decimal("19"))
        make_card(customer, "tok_card_declined")
    tenant.dunning_retry_days = [3]
    tenant.save(update_fields=["dunning_retry_days"])
    subscription = metered_subscription(customer)
    with time_machine.travel(MID, tick=False):
        ingest(tenant, event(subscription, "api_calls", 4, at=MID - dt.timedelta(hours=1)))

    _cancel_for_nonpayment(subscription, MID, django_capture_on_commit_callbacks)

    final = Invoice.objects.get(subscription=subscription, billing_reason="final_usage")
    final.refresh_from_db()
    # 4 calls x 2.5 = 10, tax 1.9 -> 2: declined, left open, its retry scheduled 3 days on.
    assert (final.total, final.status, final.amount_due) == (12, "open", 12)
    assert list(final.payments.values_list("status", flat=True)) == ["failed"]
    assert final.next_attempt_at == final.finalised_at + dt.timedelta(days=3)
    subscription.refresh_from_db()
    assert subscription.status == "cancelled"


def test_a_second_final_invoice_for_the_period_is_refused_as_a_duplicate(card_customer):
    subscription = metered_subscription(card_customer)

    def issue():
        return invoicing_services.invoice_issue(
            customer=card_customer,
            currency="EUR",
            lines=[LineDraft("API calls", "usage", 35)],
            subscription=subscription,
            period_start=ANCHOR,
            period_end=MID,
            billing_reason="final_usage",
            at=MID,
        )

    first = issue()
    # The period's renewal invoice does not collide with it.
    invoicing_services.invoice_issue(
        customer=card_customer,
        currency="EUR",
        lines=[LineDraft("Fee", "subscription", 1000)],
        subscription=subscription,
        period_start=ANCHOR,
        period_end=END,
        billing_reason="renewal",
        at=END,
    )
    with pytest.raises(invoicing_services.DuplicatePeriodInvoice) as raised:
        issue()
    assert raised.value.invoice == first
    assert (
        Invoice.objects.filter(subscription=subscription, billing_reason="final_usage").count() == 1
    )
