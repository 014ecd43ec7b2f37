import datetime as dt
import threading
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from invoicing import services
from invoicing.engine import billing_run
from invoicing.models import Invoice, InvoiceLine, Payment
from invoicing.services import LineDraft
from subscriptions.models import Subscription
from tests.invoicing.factories import (
    issue_invoice,
    make_card,
    make_customer,
    make_subscription,
    race_run_billing,
)
from tests.utils import postgresql_only

UTC = dt.UTC
ROOT = Path(__file__).resolve().parents[2]


def run_billing(at: dt.datetime) -> str:
    out = StringIO()
    call_command("run_billing", "--at", at.strftime("%Y-%m-%dT%H:%M:%SZ"), stdout=out)
    return out.getvalue()


def _renew_for_a_year(subscription) -> list[Invoice]:
    for _ in range(12):
        subscription.refresh_from_db()
        run_billing(subscription.valid_until)
    return list(Invoice.objects.filter(subscription=subscription).order_by("period_start"))


def test_a_year_of_renewals_from_january_31st(tenant):
    customer = make_customer(tenant, standard_tax_rate=Decimal("19"))
    make_card(customer, "tok_visa")
    subscription = make_subscription(
        customer, anchor=dt.datetime(2027, 1, 31, 9, 30, tzinfo=UTC), amount=1999
    )
    invoices = _renew_for_a_year(subscription)
    starts = [invoice.period_start.date().isoformat() for invoice in invoices]
    assert starts == [
        "2027-02-28",
        "2027-03-31",
        "2027-04-30",
        "2027-05-31",
        "2027-06-30",
        "2027-07-31",
        "2027-08-31",
        "2027-09-30",
        "2027-10-31",
        "2027-11-30",
        "2027-12-31",
        "2028-01-31",
    ]
    assert all(i.period_start.time() == dt.time(9, 30) for i in invoices)
    assert [i.period_end for i in invoices[:-1]] == [i.period_start for i in invoices[1:]]
    assert {(i.sub_total, i.tax_total, i.total) for i in invoices} == {(1999, 380, 2379)}
    assert all(i.status == "paid" and i.billing_reason == "renewal" for i in invoices)
    assert Payment.objects.filter(status="completed").count() == 12
    subscription.refresh_from_db()
    assert subscription.period_index == 12
    assert subscription.valid_until == dt.datetime(2028, 2, 29, 9, 30, tzinfo=UTC)


def test_a_year_of_renewals_from_february_29th(tenant):
    customer = make_customer(tenant, billing_type="invoice")
    subscription = make_subscription(customer, anchor=dt.datetime(2028, 2, 29, tzinfo=UTC))
    invoices = _renew_for_a_year(subscription)
    assert [i.period_start.date() for i in invoices] == [
        dt.date(2028, month, 29) for month in range(3, 13)
    ] + [dt.date(2029, 1, 29), dt.date(2029, 2, 28)]
    assert all(i.status == "open" and i.total == 1000 for i in invoices)
    # Invoice customers are not charged; they get the tenant's payment terms.
    assert all(i.due_date == (i.finalised_at + dt.timedelta(days=14)).date() for i in invoices)
    assert not Payment.objects.exists()


def test_one_late_run_catches_up_every_missed_period(tenant):
    customer = make_customer(tenant)
    make_card(customer)
    subscription = make_subscription(customer, anchor=dt.datetime(2027, 1, 1, tzinfo=UTC))
    billing_run(at=dt.datetime(2027, 4, 15, tzinfo=UTC))
    assert Invoice.objects.filter(subscription=subscription).count() == 3
    subscription.refresh_from_db()
    assert subscription.valid_until == dt.datetime(2027, 5, 1, tzinfo=UTC)


def test_running_the_same_instant_twice_changes_nothing(tenant):
    customer = make_customer(tenant)
    make_card(customer)
    make_subscription(customer, anchor=dt.datetime(2027, 1, 1, tzinfo=UTC))
    at = dt.datetime(2027, 2, 1, tzinfo=UTC)
    first = billing_run(at=at)
    assert (first.renewals, first.invoices, first.charges) == (1, 1, 1)
    snapshot = list(Invoice.objects.values_list("id", "status", "number"))
    second = billing_run(at=at)
    assert (second.renewals, second.invoices, second.charges) == (0, 0, 0)
    assert list(Invoice.objects.values_list("id", "status", "number")) == snapshot
    assert Payment.objects.count() == 1


def test_pending_prorations_go_on_the_renewal_invoice(tenant):
    customer = make_customer(tenant)
    subscription = make_subscription(customer, anchor=dt.datetime(2027, 1, 1, tzinfo=UTC))
    services.pending_line_add(
        subscription=subscription, line=LineDraft("2 seats added", "proration", 750)
    )
    billing_run(at=dt.datetime(2027, 2, 1, tzinfo=UTC))
    invoice = Invoice.objects.get()
    assert invoice.total == 1750
    assert not InvoiceLine.objects.filter(invoice__isnull=True).exists()


def test_a_subscription_that_fails_is_set_aside_not_its_batch(tenant, monkeypatch):
    customer = make_customer(tenant)
    broken = make_subscription(customer, anchor=dt.datetime(2027, 1, 1, tzinfo=UTC))
    healthy = make_subscription(customer, anchor=dt.datetime(2027, 1, 1, tzinfo=UTC))
    from subscriptions import services as subscription_services

    original = subscription_services.renewal_lines_many

    def failing(subscriptions, periods):
        lines = original(subscriptions, periods)
        lines.pop(broken.pk)
        return lines

    monkeypatch.setattr(subscription_services, "renewal_lines_many", failing)
    report = billing_run(at=dt.datetime(2027, 2, 1, tzinfo=UTC))
    assert report.renewals == 1
    assert Invoice.objects.get().subscription_id == healthy.pk
    broken.refresh_from_db()
    assert broken.period_index == 0


def test_a_failed_charge_leaves_the_invoice_open_and_dunning_runs(tenant):
    tenant.dunning_retry_days = [1, 3]
    tenant.save()
    customer = make_customer(tenant)
    make_card(customer, "tok_insufficient_funds")
    subscription = make_subscription(customer, anchor=dt.datetime(2027, 1, 1, tzinfo=UTC))
    at = dt.datetime(2027, 2, 1, tzinfo=UTC)
    report = billing_run(at=at)
    assert (report.charges, report.charges_failed) == (1, 1)
    invoice = Invoice.objects.get()
    subscription.refresh_from_db()
    assert invoice.status == "open" and invoice.paid is False
    assert invoice.next_attempt_at == at + dt.timedelta(days=1)
    assert subscription.status == "overdue_payment_open"
    assert Payment.objects.get().failure_reason == "lack_of_funds"

    assert billing_run(at=at + dt.timedelta(hours=12)).dunning_retries == 0
    assert billing_run(at=at + dt.timedelta(days=1)).dunning_retries == 1
    invoice.refresh_from_db()
    assert invoice.next_attempt_at == at + dt.timedelta(days=3)
    assert billing_run(at=at + dt.timedelta(days=3)).dunning_retries == 1
    invoice.refresh_from_db()
    subscription.refresh_from_db()
    assert invoice.status == "open" and invoice.next_attempt_at is None
    assert subscription.status == "overdue_payment_disabled"
    assert Payment.objects.filter(status="failed").count() == 3
    assert len(set(Payment.objects.values_list("idempotency_key", flat=True))) == 3


def test_a_retry_that_succeeds_recovers_the_subscription(tenant):
    tenant.dunning_retry_days = [2]
    tenant.save()
    customer = make_customer(tenant)
    make_card(customer, "tok_card_declined")
    subscription = make_subscription(customer, anchor=dt.datetime(2027, 1, 1, tzinfo=UTC))
    at = dt.datetime(2027, 2, 1, tzinfo=UTC)
    billing_run(at=at)
    make_card(customer, "tok_visa")
    billing_run(at=at + dt.timedelta(days=2))
    invoice = Invoice.objects.get()
    subscription.refresh_from_db()
    assert invoice.status == "paid"
    assert subscription.status == "active"


def test_run_billing_rejects_a_bad_instant():
    with pytest.raises(CommandError):
        call_command("run_billing", "--at", "yesterday")


# --- PostgreSQL concurrency --------------------------------------------------------------------


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_two_billing_processes_racing_make_one_invoice_per_subscription(tenant):
    customers = [make_customer(tenant) for _ in range(20)]
    for customer in customers:
        make_card(customer)
    subscriptions = [
        make_subscription(customers[i % 20], anchor=dt.datetime(2027, 1, 1, tzinfo=UTC))
        for i in range(300)
    ]
    race_run_billing(dt.datetime(2027, 2, 1, tzinfo=UTC), batch_size=25)
    assert Invoice.objects.count() == len(subscriptions)
    assert Invoice.objects.values("subscription").distinct().count() == len(subscriptions)
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-{n:06d}" for n in range(1, 301)]
    assert Payment.objects.filter(status="completed").count() == 300
    assert set(Subscription.objects.values_list("period_index", flat=True)) == {1}


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_invoice_numbers_stay_gapless_under_concurrency(tenant):
    customers = [make_customer(tenant) for _ in range(8)]
    errors = []

    def issue(customer):
        try:
            for _ in range(5):
                issue_invoice(customer)
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=issue, args=(c,)) for c in customers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-{n:06d}" for n in range(1, 41)]


def test_a_subscription_whose_fees_cannot_be_computed_is_set_aside(tenant, monkeypatch):
    customer = make_customer(tenant)
    broken = make_subscription(customer, anchor=dt.datetime(2027, 1, 1, tzinfo=UTC))
    healthy = make_subscription(customer, anchor=dt.datetime(2027, 1, 1, tzinfo=UTC))
    from subscriptions import services as subscription_services

    original = subscription_services._renewal_line

    def renewal_line(item, period_start, period_end):
        if item.subscription_id == broken.pk:
            raise ValueError("tiers of this price do not start at 1")
        return original(item, period_start, period_end)

    monkeypatch.setattr(subscription_services, "_renewal_line", renewal_line)
    report = billing_run(at=dt.datetime(2027, 2, 1, tzinfo=UTC))

    assert (report.renewals, report.invoices) == (1, 1)
    assert Invoice.objects.get().subscription_id == healthy.pk
    assert [pk for pk, _ in report.set_aside] == [str(broken.pk)]
    assert "tiers of this price" in report.set_aside[0][1]
    broken.refresh_from_db()
    assert broken.period_index == 0
