"""Usage on renewal invoices: arrears of the closed period, exactly once, late events not lost."""

import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from invoicing.engine import billing_run
from invoicing.models import Invoice
from tests.usage.conftest import ANCHOR
from tests.usage.factories import (
    add_metered_item,
    event,
    ingest,
    make_customer,
    make_metric,
    make_subscription,
)
from usage.models import UsageEvent
from usage.selectors import commit_lines_many, customer_cost_estimate

pytestmark = pytest.mark.django_db

END = dt.datetime(2026, 4, 1, 10, 30, tzinfo=dt.UTC)  # the first period's end (the renewal)
NEXT_END = dt.datetime(2026, 5, 1, 10, 30, tzinfo=dt.UTC)


def _usage_lines(invoice):
    return [
        (line.description, line.quantity, line.unit_price, line.sub_total)
        for line in invoice.lines.filter(kind="usage").order_by("position")
    ]


@pytest.fixture
def metered(tenant):
    with time_machine.travel(ANCHOR, tick=False):
        customer = make_customer(tenant, billing_type="invoice")
        subscription = make_subscription(customer, anchor=ANCHOR)
    calls = make_metric(tenant, "api_calls", "sum", name="API calls")
    add_metered_item(subscription, calls, amount=2)
    return subscription


def _renew(at):
    with time_machine.travel(at, tick=False):
        return billing_run(at=at)


def test_renewal_bills_the_closed_period_in_arrears_and_nothing_of_the_new_one(tenant, metered):
    with time_machine.travel(END - dt.timedelta(minutes=1), tick=False):
        ingest(
            tenant,
            event(metered, "api_calls", 10, at=ANCHOR + dt.timedelta(minutes=1)),
            event(metered, "api_calls", 5, at=END - dt.timedelta(seconds=1)),
            # Sent early (inside the 5-minute lead): it belongs to the new period.
            event(metered, "api_calls", 100, at=END + dt.timedelta(minutes=2)),
        )
    report = _renew(END)
    assert report.renewals == 1, report.set_aside
    invoice = Invoice.objects.get(subscription=metered, period_start=END)
    assert _usage_lines(invoice) == [
        (f"Cloud {metered.plan.name.split()[-1]}: API calls (units)", Decimal(15), Decimal(2), 30)
    ]
    line = invoice.lines.get(kind="usage")
    assert (line.period_start, line.period_end, line.metric.code) == (ANCHOR, END, "api_calls")
    billed = UsageEvent.objects.filter(renewal_order_reference=invoice.number)
    assert billed.count() == 2
    assert UsageEvent.objects.filter(renewal_order_reference__isnull=True).count() == 1
    with time_machine.travel(END + dt.timedelta(minutes=3), tick=False):
        assert customer_cost_estimate(customer=metered.customer).total == 200
    # Running the same instant again bills nothing twice.
    _renew(END)
    assert Invoice.objects.filter(subscription=metered).count() == 1


def test_late_events_after_the_renewal_go_on_the_next_invoice(tenant, metered):
    with time_machine.travel(END - dt.timedelta(hours=1), tick=False):
        ingest(tenant, event(metered, "api_calls", 10, at=END - dt.timedelta(hours=2)))
    _renew(END)
    first = Invoice.objects.get(subscription=metered, period_start=END)
    assert [line[1] for line in _usage_lines(first)] == [Decimal(10)]

    # A day after the renewal, an event of the closed period arrives (inside the 35-day window).
    with time_machine.travel(END + dt.timedelta(days=1), tick=False):
        ingest(
            tenant,
            event(metered, "api_calls", 4, at=END - dt.timedelta(days=3)),
            event(metered, "api_calls", 1, at=END + dt.timedelta(hours=5)),
        )
        assert customer_cost_estimate(customer=metered.customer).total == 10
    _renew(NEXT_END)
    second = Invoice.objects.get(subscription=metered, period_start=NEXT_END)
    assert [(line[1], line[3]) for line in _usage_lines(second)] == [(Decimal(5), 10)]
    assert UsageEvent.objects.filter(renewal_order_reference=second.number).count() == 2
    assert not UsageEvent.objects.filter(renewal_order_reference__isnull=True).exists()


def test_commitments_are_billed_in_advance(tenant, metered):
    storage = make_metric(tenant, "storage", "max")
    item = add_metered_item(
        metered,
        storage,
        calc_rule_type="commit",
        pricing={"default_value": "100", "money_value": "0.5"},
    )
    lines = commit_lines_many(subscriptions=[metered], periods={metered.pk: (END, NEXT_END)})
    ((line,),) = lines.values()
    assert (line.amount, line.quantity, line.unit_price) == (50, Decimal(100), Decimal("0.5"))
    assert line.subscription_item_id == item.pk
