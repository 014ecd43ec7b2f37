"""Factories for invoicing tests: a catalog, a subscription made directly from models (so these
tests do not depend on the lifecycle services), payment methods and issued invoices."""

import datetime as dt
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from django.db import connection

from billing_project import billing_math
from invoicing import services
from invoicing.services import LineDraft
from subscriptions.models import Price, Product, Subscription, SubscriptionItem, SubscriptionPlan
from tests.factories import CustomerFactory

UTC = dt.UTC
ROOT = Path(__file__).resolve().parents[2]


def make_customer(tenant, **fields):
    return CustomerFactory(tenant=tenant, **fields)


def make_card(customer, token: str = "tok_visa"):
    return services.payment_method_from_card_token(customer=customer, card_token=token)


def make_plan(tenant, *, amount=1000, currency="EUR", schedule="month", name="Pro"):
    product = Product.objects.create(tenant=tenant, name=name)
    price = Price.objects.create(
        tenant=tenant, product=product, amount=amount, currency=currency, schedule=schedule
    )
    plan = SubscriptionPlan.objects.create(
        tenant=tenant, name=name, code_name=f"{name.lower()}-{price.pk.hex[-6:]}", product=product
    )
    plan.prices.add(price)
    return plan, price


def make_subscription(customer, *, anchor, amount=1000, seats=1, schedule="month", **fields):
    """An active subscription in its first period (already invoiced), due at the end of it."""
    plan, price = make_plan(customer.tenant, amount=amount, schedule=schedule)
    start, end = billing_math.period_bounds(anchor, schedule, 0)
    subscription = Subscription.objects.create(
        tenant=customer.tenant,
        customer=customer,
        plan=plan,
        price=price,
        seat_number=seats,
        schedule=schedule,
        currency=price.currency,
        anchor=anchor,
        period_index=0,
        current_period_start=start,
        valid_until=end,
        started_at=anchor,
        **fields,
    )
    SubscriptionItem.objects.create(
        tenant=customer.tenant,
        subscription=subscription,
        item_type="plan",
        product=plan.product,
        price=price,
        quantity=seats,
        unit_price=Decimal(amount),
    )
    return subscription


def issue_invoice(customer, amounts=(1000,), *, currency="EUR", at=None, **line_fields):
    lines = [
        LineDraft(description=f"Item {i + 1}", kind="one_off", amount=amount, **line_fields)
        for i, amount in enumerate(amounts)
    ]
    return services.invoice_issue(
        customer=customer, currency=currency, lines=lines, billing_reason="manual", at=at
    )


def race_run_billing(at: dt.datetime, *, batch_size: int, processes: int = 2) -> None:
    """Run `manage.py run_billing --at` in several processes at once against the test database
    (a transactional test's, so they see its rows); each must exit 0."""
    settings = connection.settings_dict
    url = (
        f"postgres://{settings['USER']}:{settings['PASSWORD'] or ''}@{settings['HOST']}:"
        f"{settings['PORT']}/{settings['NAME']}"
    )
    command = [
        sys.executable,
        "manage.py",
        "run_billing",
        "--at",
        at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--batch-size",
        str(batch_size),
    ]
    running = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url, "CONN_MAX_AGE": "0"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    outputs = [process.communicate(timeout=120) for process in running]
    assert [p.returncode for p in running] == [0] * processes, outputs


def invoice_webhooks(billing_reason: str) -> list[tuple]:
    """(type, status, total) of the invoice.* webhook events of invoices with that reason."""
    from webhooks.models import WebhookEvent

    return sorted(
        (e.type, e.data["status"], e.data["total"])
        for e in WebhookEvent.objects.filter(
            type__startswith="invoice.", data__billing_reason=billing_reason
        )
    )


# --- Metered subscriptions for the per-period invoice tests (post_invoice, final_usage) ----------

METERED_ANCHOR = dt.datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
METERED_FIRST_END = dt.datetime(2026, 4, 1, 10, 30, tzinfo=UTC)  # the first period's end


def metered_subscription(customer, *, post_invoice_price: str | None = None) -> Subscription:
    """A monthly subscription from METERED_ANCHOR (plan 1000) with a `unit` item on api_calls at
    2.5 (minor units per unit) and, given `post_invoice_price`, a `post_invoice` item on
    storage_gb at that price."""
    import time_machine

    from tests.usage.factories import add_metered_item, make_metric
    from tests.usage.factories import make_subscription as make_metered

    tenant = customer.tenant
    with time_machine.travel(METERED_ANCHOR, tick=False):
        subscription = make_metered(customer, anchor=METERED_ANCHOR)
    calls = make_metric(tenant, "api_calls", "sum", name="API calls")
    add_metered_item(
        subscription, calls, calc_rule_type="unit", pricing={"money_value": "2.5"}, amount=0
    )
    if post_invoice_price is not None:
        storage = make_metric(tenant, "storage_gb", "sum", name="Storage")
        add_metered_item(
            subscription,
            storage,
            calc_rule_type="post_invoice",
            pricing={"money_value": post_invoice_price},
            amount=0,
        )
    return subscription


def usage_lines(invoice) -> list[tuple]:
    """An invoice's usage lines as (metric code, quantity, unit price, subtotal, tax)."""
    return [
        (line.metric.code, line.quantity, line.unit_price, line.sub_total, line.tax_total)
        for line in invoice.lines.filter(kind="usage").order_by("position")
    ]
