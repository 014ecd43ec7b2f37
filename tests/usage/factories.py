"""Factories for usage tests: metrics, metered subscriptions made directly from models (so these
tests do not depend on the lifecycle services), and stored events."""

import datetime as dt
import itertools
from decimal import Decimal

from billing_project import billing_math
from subscriptions.models import (
    Metric,
    Price,
    Product,
    Subscription,
    SubscriptionItem,
    SubscriptionPlan,
)
from tests.factories import CustomerFactory
from usage import services

UTC = dt.UTC
_numbers = itertools.count(1)


def make_metric(tenant, code=None, method="sum", *, prop="", filters=None, name=None) -> Metric:
    code = code or f"metric_{next(_numbers)}"
    return Metric.objects.create(
        tenant=tenant,
        code=code,
        name=name or code.replace("_", " ").title(),
        aggregation_method=method,
        aggregation_property=prop,
        filters=filters or [],
        unit_name="units",
    )


def make_customer(tenant, **fields):
    return CustomerFactory(tenant=tenant, **fields)


def make_subscription(customer, *, anchor, amount=1000, schedule="month", status="active"):
    """An active subscription in its first period [anchor, anchor + schedule) with a plan item."""
    tenant = customer.tenant
    number = next(_numbers)
    product = Product.objects.create(tenant=tenant, name=f"Cloud {number}")
    price = Price.objects.create(
        tenant=tenant, product=product, amount=amount, currency="EUR", schedule=schedule
    )
    plan = SubscriptionPlan.objects.create(
        tenant=tenant, name=f"Cloud {number}", code_name=f"cloud-{number}", product=product
    )
    start, end = billing_math.period_bounds(anchor, schedule, 0)
    subscription = Subscription.objects.create(
        tenant=tenant,
        customer=customer,
        plan=plan,
        price=price,
        schedule=schedule,
        currency="EUR",
        status=status,
        anchor=anchor,
        period_index=0,
        current_period_start=start,
        valid_until=end,
        started_at=anchor,
    )
    SubscriptionItem.objects.create(
        tenant=tenant,
        subscription=subscription,
        item_type="plan",
        product=product,
        price=price,
        quantity=1,
        unit_price=Decimal(amount),
    )
    return subscription


def add_metered_item(
    subscription,
    metric,
    *,
    price_type="per_unit",
    amount=0,
    units=None,
    tiers=None,
    calc_rule_type=None,
    pricing=None,
    metric_type="resettable",
    active_from=None,
    active_to=None,
) -> SubscriptionItem:
    """A metered item priced by a catalog usage price, or by a seed-002 rule when given."""
    tenant = subscription.tenant
    price = Price.objects.create(
        tenant=tenant,
        product=subscription.price.product,
        amount=amount,
        currency=subscription.currency,
        schedule=subscription.schedule,
        type=price_type,
        units=units,
        tiers=tiers,
        usage=True,
        metric=metric,
        metric_type=metric_type,
    )
    return SubscriptionItem.objects.create(
        tenant=tenant,
        subscription=subscription,
        item_type="usage",
        product=price.product,
        price=price,
        metric=metric,
        unit_price=Decimal(amount),
        calc_rule_type=calc_rule_type,
        pricing=pricing,
        active_from=active_from,
        active_to=active_to,
    )


def ingest(tenant, *events, batch=True):
    return services.events_ingest(tenant=tenant, events=list(events), batch=batch)


def event(subscription, code, value=None, *, at=None, event_id=None, **fields) -> dict:
    body = {
        "event_id": event_id or f"evt-{next(_numbers)}",
        "subscription": str(subscription.pk),
        "code": code,
        **fields,
    }
    if value is not None:
        body["value"] = value
    if at is not None:
        body["timestamp"] = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return body
