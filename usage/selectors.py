"""Reads for usage: aggregation of a metric over a window (in SQL: hourly rollups for the whole
hours, the events themselves for the partial hours at the edges and for late events), the cost of
metered items, customers' cost estimates, and the usage lines of renewal invoices.

What an invoice bills for a closed period [start, end) of a subscription: the events of
[start, end) plus the LATE ones, i.e. events not yet billed with a timestamp before `start` (they
arrived, inside the 35-day window, after the previous renewal). `usage.services.usage_mark_billed`
then marks every unbilled event before `end` with the invoice number, so each event is billed
exactly once and none is lost. Cost estimates use the same rule for the current period.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, DecimalField, F, Max, Q, Sum, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from billing_project import billing_math
from subscriptions.models import Metric, Price, Subscription, SubscriptionItem
from usage.metering import Aggregate
from usage.models import VALUE_DECIMAL_PLACES, VALUE_MAX_DIGITS, UsageEvent, UsageRollup
from usage.services import BILLING_STATUSES

HOUR = dt.timedelta(hours=1)
_ZERO = Decimal(0)
_LINE_QUANTITY = Decimal("0.000001")  # invoice lines keep 6 decimal places of quantity
_UNIT_PRICE = Decimal(10) ** -VALUE_DECIMAL_PLACES
Rule = SubscriptionItem.CalcRuleType


def _decimal_field() -> DecimalField:
    return DecimalField(max_digits=VALUE_MAX_DIGITS, decimal_places=VALUE_DECIMAL_PLACES)


def _measure(metric: Metric):
    if metric.aggregation_property:
        return Coalesce(
            Cast(KeyTextTransform(metric.aggregation_property, "properties"), _decimal_field()),
            F("value"),
            output_field=_decimal_field(),
        )
    return F("value")


def _filtered(queryset, metric: Metric):
    """Apply the metric's property filters in SQL, as usage.metering.MetricRule.matches does."""
    inclusive: dict[str, set[str]] = {}
    exclusive: dict[str, set[str]] = {}
    for item in metric.filters or []:
        target = exclusive if item.get("type") == "exclusive" else inclusive
        target.setdefault(str(item["name"]), set()).add(str(item["value"]))
    for index, (name, values) in enumerate([*inclusive.items(), *exclusive.items()]):
        alias = f"_filter_{index}"
        queryset = queryset.annotate(
            **{alias: Cast(KeyTextTransform(name, "properties"), TextField())}
        )
        if index < len(inclusive):
            queryset = queryset.filter(**{f"{alias}__in": values})
        else:
            queryset = queryset.filter(
                Q(**{f"{alias}__isnull": True}) | ~Q(**{f"{alias}__in": values})
            )
    return queryset


def _floor_hour(at: dt.datetime) -> dt.datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(at: dt.datetime) -> dt.datetime:
    floor = _floor_hour(at)
    return floor if floor == at else floor + HOUR


@dataclass(frozen=True)
class Window:
    """Events with start <= timestamp < end (start None: since ever), plus, when `late_to` is
    set, unbilled ones with late_from <= timestamp < late_to."""

    start: dt.datetime | None
    end: dt.datetime
    late_from: dt.datetime | None = None
    late_to: dt.datetime | None = None


def metric_usage(*, tenant_id, subscription_id, metric: Metric, window: Window) -> Decimal:
    """The metric's aggregate for one subscription over `window`, in SQL."""
    events = UsageEvent.objects.filter(
        tenant_id=tenant_id, subscription_id=subscription_id, code=metric.code
    )
    late = Q()
    if window.late_to is not None:
        late = Q(renewal_order_reference__isnull=True, timestamp__lt=window.late_to)
        if window.late_from is not None:
            late &= Q(timestamp__gte=window.late_from)
    if metric.aggregation_method == Metric.AggregationMethod.UNIQUE_COUNT:
        inside = Q(timestamp__lt=window.end)
        if window.start is not None:
            inside &= Q(timestamp__gte=window.start)
        distinct_of = (
            Cast(KeyTextTransform(metric.aggregation_property, "properties"), TextField())
            if metric.aggregation_property
            else F("value")
        )
        result = _filtered(events.filter(inside | late if late else inside), metric).aggregate(
            n=Count(distinct_of, distinct=True)
        )
        return Decimal(result["n"] or 0)

    aggregate = Aggregate()
    first_hour = _ceil_hour(window.start) if window.start is not None else None
    last_hour = _floor_hour(window.end)
    raw = Q()
    if first_hour is None or first_hour < last_hour:
        rollups = UsageRollup.objects.filter(
            tenant_id=tenant_id,
            subscription_id=subscription_id,
            code=metric.code,
            hour__lt=last_hour,
        )
        if first_hour is not None:
            rollups = rollups.filter(hour__gte=first_hour)
            raw |= Q(timestamp__gte=window.start, timestamp__lt=first_hour)
        totals = rollups.aggregate(
            count=Sum("event_count"), total=Sum("value_sum"), maximum=Max("value_max")
        )
        aggregate.add(totals["count"], totals["total"], totals["maximum"])
        if metric.aggregation_method == Metric.AggregationMethod.LATEST:
            newest = (
                rollups.filter(latest_at__isnull=False)
                .order_by("-latest_at", F("latest_value").desc(nulls_last=True))
                .values_list("latest_at", "latest_value")
                .first()
            )
            if newest:
                aggregate.add(0, 0, None, *newest)
        raw |= Q(timestamp__gte=last_hour, timestamp__lt=window.end)
    else:
        raw |= Q(timestamp__gte=window.start, timestamp__lt=window.end)
    if late:
        raw |= late
    measured = _filtered(events.filter(raw), metric).annotate(_measure=_measure(metric))
    totals = measured.aggregate(count=Count("id"), total=Sum("_measure"), maximum=Max("_measure"))
    aggregate.add(totals["count"], totals["total"], totals["maximum"])
    if metric.aggregation_method == Metric.AggregationMethod.LATEST and totals["count"]:
        newest = (
            measured.order_by("-timestamp", F("_measure").desc(nulls_last=True))
            .values_list("timestamp", "_measure")
            .first()
        )
        if newest:
            aggregate.add(0, 0, None, *newest)
    return aggregate.quantity(metric.aggregation_method)


# --- Charges of metered items --------------------------------------------------------------------


@dataclass
class Charge:
    amount: int
    quantity: Decimal
    unit_price: Decimal | None


def _pricing_decimal(pricing: dict, name: str) -> Decimal | None:
    raw = pricing.get(name)
    if raw in (None, ""):
        return None
    return Decimal(str(raw))


def item_charge(item: SubscriptionItem, usage: Decimal, currency: str) -> Charge:
    """What a metered item costs for `usage` units of its metric over one closed period, in
    arrears: the seed-002 rule when the item has one, else its catalog usage price (a usage
    `fixed_price` is a price per unit)."""
    if item.calc_rule_type:
        pricing = item.pricing or {}
        money_value = _pricing_decimal(pricing, "money_value")
        default_value = _pricing_decimal(pricing, "default_value")
        steps = billing_math.parse_steps(pricing["steps"]) if pricing.get("steps") else None
        exact = billing_math.calc_rule_amount(
            item.calc_rule_type, usage, money_value, default_value, steps
        )
        amount = billing_math.round_minor(exact, currency)
        if item.calc_rule_type == Rule.OVERCOMMIT:
            return Charge(amount, max(_ZERO, usage - (default_value or _ZERO)), money_value)
        if item.calc_rule_type in (Rule.UNIT, Rule.POST_INVOICE):
            return Charge(amount, usage, money_value)
        return Charge(amount, usage, _effective_unit_price(exact, usage))
    price = item.price
    price_type = Price.Type.PER_UNIT if price.type == Price.Type.FIXED_PRICE else price.type
    exact = billing_math.price_amount_unrounded(
        price_type,
        usage,
        amount=price.amount,
        units=price.units,
        tiers=billing_math.parse_tiers(price.tiers) if price.tiers else None,
    )
    unit_price = (
        Decimal(price.amount)
        if price_type == Price.Type.PER_UNIT
        else _effective_unit_price(exact, usage)
    )
    return Charge(billing_math.round_minor(exact, currency), usage, unit_price)


def _effective_unit_price(exact: Decimal, usage: Decimal) -> Decimal | None:
    if not usage:
        return None
    return (exact / usage).quantize(_UNIT_PRICE)


def _item_window(item: SubscriptionItem, start, end, *, with_late: bool) -> Window | None:
    """The part of [start, end) inside the item's [active_from, active_to), with the late events
    of the item's active range before `start`; None when there is nothing to count."""
    inside_start = max(start, item.active_from) if item.active_from else start
    inside_end = min(end, item.active_to) if item.active_to else end
    late_to = min(start, item.active_to) if item.active_to else start
    late_from = item.active_from
    has_late = with_late and (late_from is None or late_from < late_to)
    if inside_start >= inside_end and not has_late:
        return None
    if inside_start >= inside_end:
        inside_start = inside_end = start
    return Window(
        start=inside_start,
        end=inside_end,
        late_from=late_from if has_late else None,
        late_to=late_to if has_late else None,
    )


def _is_continuous(item: SubscriptionItem) -> bool:
    return item.price.metric_type == Price.MetricType.CONTINUOUS


def _metered_items(subscription_ids) -> dict:
    items: dict = {}
    for item in (
        SubscriptionItem.objects.filter(
            subscription_id__in=list(subscription_ids),
            item_type=SubscriptionItem.ItemType.USAGE,
            metric__isnull=False,
        )
        .select_related("metric", "price", "price__product")
        .order_by("created_at", "id")
    ):
        items.setdefault(item.subscription_id, []).append(item)
    return items


def _item_usage(subscription, item, start, end, cache: dict) -> Decimal | None:
    continuous = _is_continuous(item)
    window = _item_window(item, start, end, with_late=not continuous)
    if window is None:
        return None
    if continuous:
        window = Window(start=None, end=window.end)
    key = (subscription.pk, item.metric_id, window)
    if key not in cache:
        cache[key] = metric_usage(
            tenant_id=subscription.tenant_id,
            subscription_id=subscription.pk,
            metric=item.metric,
            window=window,
        )
    return cache[key]


# --- Invoice lines (INV's renewal engine calls these) ------------------------------------------


def _line(item, charge: Charge, period, description: str):
    from invoicing.services import LineDraft

    return LineDraft(
        description=description,
        kind="usage",
        amount=charge.amount,
        quantity=charge.quantity.quantize(_LINE_QUANTITY),
        unit_price=charge.unit_price,
        tax_type=item.price.product.tax_type,
        including_tax=item.price.including_tax,
        period_start=period[0],
        period_end=period[1],
        metric_id=item.metric_id,
        subscription_item_id=item.pk,
    )


def _describe(item: SubscriptionItem) -> str:
    metric = item.metric
    label = item.description or f"{item.price.product.name}: {metric.name or metric.code}"
    return f"{label} ({metric.unit_name})" if metric.unit_name else label


def _arrears_lines_many(subscriptions, periods: dict, *, post_invoice: bool | None) -> dict:
    """post_invoice: True = only `post_invoice` items, False = all but them, None = all."""
    items_by_subscription = _metered_items(s.pk for s in subscriptions)
    lines: dict = {}
    for subscription in subscriptions:
        start, end = periods[subscription.pk]
        cache: dict = {}
        result = []
        for item in items_by_subscription.get(subscription.pk, []):
            if item.calc_rule_type == Rule.COMMIT:
                continue
            if post_invoice is not None and (item.calc_rule_type == Rule.POST_INVOICE) != (
                post_invoice
            ):
                continue
            usage = _item_usage(subscription, item, start, end, cache)
            if usage is None:
                continue
            charge = item_charge(item, usage, subscription.currency)
            if not charge.amount and not usage:
                continue
            result.append(_line(item, charge, (start, end), _describe(item)))
        lines[subscription.pk] = result
    return lines


def usage_lines_many(*, subscriptions, periods: dict, include_post_invoice: bool = True) -> dict:
    """Arrears usage lines of each subscription's CLOSED period `periods[sub_id] = (start, end)`
    (unit, stepped, staged, overcommit, post_invoice and catalog usage prices; late events
    included). A caller that issues `post_invoice` items on their own invoice passes
    include_post_invoice=False and uses post_invoice_lines_many for them."""
    return _arrears_lines_many(
        list(subscriptions), periods, post_invoice=None if include_post_invoice else False
    )


def post_invoice_lines_many(*, subscriptions, periods: dict) -> dict:
    """The `post_invoice` items' lines, for their own invoice after the period closes."""
    return _arrears_lines_many(list(subscriptions), periods, post_invoice=True)


def usage_lines(*, subscription, period_start, period_end) -> list:
    return usage_lines_many(
        subscriptions=[subscription], periods={subscription.pk: (period_start, period_end)}
    )[subscription.pk]


def commit_lines_many(*, subscriptions, periods: dict) -> dict:
    """Commitments billed in advance for each subscription's NEW period: `default_value x
    money_value` of each `commit` item, for the share of the period the item is active."""
    items_by_subscription = _metered_items(s.pk for s in subscriptions)
    lines: dict = {}
    for subscription in subscriptions:
        start, end = periods[subscription.pk]
        result = []
        for item in items_by_subscription.get(subscription.pk, []):
            if item.calc_rule_type != Rule.COMMIT:
                continue
            pricing = item.pricing or {}
            committed = _pricing_decimal(pricing, "default_value") or _ZERO
            money_value = _pricing_decimal(pricing, "money_value") or _ZERO
            share = billing_math.active_fraction(item.active_from, item.active_to, start, end)
            if not share:
                continue
            amount = billing_math.commit_in_advance(
                committed, money_value, currency=subscription.currency, share=share
            )
            charge = Charge(amount, committed, money_value)
            result.append(_line(item, charge, (start, end), f"Commitment: {_describe(item)}"))
        lines[subscription.pk] = result
    return lines


# --- Cost estimates --------------------------------------------------------------------------


@dataclass
class MetricCost:
    metric: Metric
    usage: Decimal
    amount: int


@dataclass
class CostEstimate:
    currency: str
    total: int = 0
    costs: list[MetricCost] = field(default_factory=list)
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None


def customer_cost_estimate(*, customer, at: dt.datetime | None = None) -> CostEstimate:
    """The usage cost of the customer's billing subscriptions in their current periods, before
    tax: what their next renewal invoices would bill in arrears if the period closed now."""
    at = at or timezone.now()
    subscriptions = list(
        Subscription.objects.filter(
            tenant_id=customer.tenant_id, customer_id=customer.pk, status__in=BILLING_STATUSES
        ).order_by("created_at", "id")
    )
    currency = (
        subscriptions[0].currency
        if subscriptions
        else (customer.currency or customer.tenant.currency)
    )
    estimate = CostEstimate(currency=currency)
    by_metric: dict = {}
    items_by_subscription = _metered_items(s.pk for s in subscriptions)
    for subscription in subscriptions:
        start, end = subscription.current_period_start, subscription.valid_until
        if estimate.period_start is None:
            estimate.period_start, estimate.period_end = start, end
        cache: dict = {}
        counted: set = set()
        for item in items_by_subscription.get(subscription.pk, []):
            if item.calc_rule_type == Rule.COMMIT:
                continue
            usage = _item_usage(subscription, item, start, end, cache)
            if usage is None:
                continue
            charge = item_charge(item, usage, subscription.currency)
            entry = by_metric.get(item.metric_id)
            if entry is None:
                entry = by_metric[item.metric_id] = MetricCost(item.metric, _ZERO, 0)
                estimate.costs.append(entry)
            if item.metric_id not in counted:
                # Two items of one metric (commit + overcommit) price the same usage once.
                counted.add(item.metric_id)
                entry.usage += usage
            entry.amount += charge.amount
            estimate.total += charge.amount
    return estimate
