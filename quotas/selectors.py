"""Reads for namespaces: effective limits (the plan's defaults overlaid by the namespace's quotas),
quota periods, and a metric's usage in a namespace (period totals, hourly and monthly
breakdowns) from the hourly rollups, with the events themselves for partial edge hours.

Quota periods are whole hours: they run from the hour in which the customer's billing period
starts to the hour in which it ends (a calendar month in UTC without a billing subscription), so
enforcement at ingestion reads only rollups."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Max, Q, Sum
from django.utils import timezone

from customers.models import Namespace
from quotas.models import Quota
from subscriptions.models import Metric, PlanLimit, Subscription, SubscriptionPlan
from usage.metering import MetricRule
from usage.models import UsageEvent, UsageRollup
from usage.selectors import Aggregate
from usage.services import BILLING_STATUSES

HOUR = dt.timedelta(hours=1)
UNLIMITED = -1
GAUGE_METHODS = frozenset({Metric.AggregationMethod.LATEST, Metric.AggregationMethod.MAX})
API_LIMIT_UNITS = {"per-second": 1, "per-minute": 60, "per-hour": 3600}
HARD_KINDS = ("object_limits", "resource_limits")
KIND_OF_REPORT = {"object_limits": "objects", "resource_limits": "resources"}


def floor_hour(at: dt.datetime) -> dt.datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: dt.datetime) -> dt.datetime:
    floor = floor_hour(at)
    return floor if floor == at else floor + HOUR


def month_bounds(at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start = at.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


def plan_limit_kind(aggregation_method: str) -> str:
    """Where a plan's default for a metric goes: gauges (latest, max) bound how many exist now
    (`object_limits`), the others the period's total (`resource_limits`)."""
    return "object_limits" if aggregation_method in GAUGE_METHODS else "resource_limits"


# --- Effective limits ----------------------------------------------------------------------------


@dataclass
class NamespaceLimits:
    """What binds one namespace: maximums per (kind, code), api limits per code, and the quota
    period (from the customer's billing subscription)."""

    namespace_id: object
    period_start: dt.datetime
    period_end: dt.datetime
    maximums: dict[tuple[str, str], int] = field(default_factory=dict)
    api_limits: dict[str, dict] = field(default_factory=dict)
    plan_id: object = None


def _billing_subscriptions(tenant, customer_ids) -> dict:
    """{customer_id: (subscription_id, plan_id, period_start, period_end)}: the newest billing."""
    found: dict = {}
    for row in (
        Subscription.objects.for_tenant(tenant)
        .filter(customer_id__in=customer_ids, status__in=BILLING_STATUSES)
        .order_by("customer_id", "-created_at")
        .values_list("customer_id", "id", "plan_id", "current_period_start", "valid_until")
    ):
        found.setdefault(row[0], row[1:])
    return found


def limits_for_namespaces(
    tenant, namespaces: dict, *, codes=None, at: dt.datetime | None = None
) -> dict[object, NamespaceLimits]:
    """Effective limits of several namespaces at once: `namespaces` maps a namespace id to its
    customer id. `codes` narrows the metrics looked at (ingestion passes the batch's codes)."""
    at = at or timezone.now()
    subscriptions = _billing_subscriptions(tenant, set(namespaces.values()))
    plan_ids = {row[1] for row in subscriptions.values()}
    plan_limits: dict = defaultdict(dict)
    if plan_ids:
        rows = PlanLimit.objects.for_tenant(tenant).filter(plan_id__in=plan_ids)
        if codes is not None:
            rows = rows.filter(feature__code__in=codes)
        plan_rows = list(rows.values_list("plan_id", "feature__code", "limit"))
        methods = dict(
            Metric.objects.for_tenant(tenant)
            .filter(code__in={code for _, code, _ in plan_rows})
            .values_list("code", "aggregation_method")
        )
        for plan_id, code, limit in plan_rows:
            if code in methods:
                plan_limits[plan_id][(plan_limit_kind(methods[code]), code)] = limit
    quotas = Quota.objects.for_tenant(tenant).filter(namespace_id__in=list(namespaces), disable=False)
    by_namespace: dict = defaultdict(list)
    for namespace_id, spec in quotas.order_by("created_at").values_list("namespace_id", "spec"):
        by_namespace[namespace_id].append(spec or {})

    result = {}
    default_start, default_end = month_bounds(at)
    for namespace_id, customer_id in namespaces.items():
        subscription = subscriptions.get(customer_id)
        if subscription is not None:
            _, plan_id, start, end = subscription
            start, end = floor_hour(start), floor_hour(end)
        else:
            plan_id, start, end = None, default_start, default_end
        limits = NamespaceLimits(namespace_id, start, end, plan_id=plan_id)
        limits.maximums.update(plan_limits.get(plan_id, {}))
        overridden: set = set()
        for spec in by_namespace.get(namespace_id, []):
            for kind in HARD_KINDS:
                for code, limit in (spec.get(kind) or {}).items():
                    if codes is not None and code not in codes:
                        continue
                    maximum = int(limit.get("maximum", UNLIMITED))
                    key = (kind, code)
                    # A quota replaces the plan's default; several quotas: the tightest binds.
                    if key not in overridden or _tighter(maximum, limits.maximums[key]):
                        limits.maximums[key] = maximum
                    overridden.add(key)
            for code, api_limit in (spec.get("api_limits") or {}).items():
                if codes is not None and code not in codes:
                    continue
                current = limits.api_limits.get(code)
                if current is None or _per_second(api_limit) < _per_second(current):
                    limits.api_limits[code] = api_limit
        result[namespace_id] = limits
    return result


def _tighter(maximum: int, current: int) -> bool:
    if maximum == UNLIMITED:
        return False
    return current == UNLIMITED or maximum < current


def _per_second(api_limit: dict) -> Decimal:
    return Decimal(api_limit["rate"]) / API_LIMIT_UNITS[api_limit.get("unit", "per-second")]


def namespace_limits(namespace: Namespace, *, at=None) -> NamespaceLimits:
    return limits_for_namespaces(namespace.tenant, {namespace.pk: namespace.customer_id}, at=at)[
        namespace.pk
    ]


# --- Usage of a metric in a namespace ------------------------------------------------------------


def period_totals(
    tenant_id, pairs: set[tuple[object, str]], start: dt.datetime, end: dt.datetime, methods: dict
) -> dict[tuple[object, str], Decimal]:
    """The quota-period aggregate of each (namespace id, code) over whole hours [start, end), read
    from the rollups in one query (plus one per `latest`/`unique_count` metric)."""
    if not pairs:
        return {}
    namespace_ids = {ns for ns, _ in pairs}
    codes = {code for _, code in pairs}
    totals = {pair: Aggregate() for pair in pairs}
    rollups = UsageRollup.objects.filter(
        tenant_id=tenant_id,
        namespace_id__in=namespace_ids,
        code__in=codes,
        hour__gte=start,
        hour__lt=end,
    )
    for namespace_id, code, count, total, maximum in (
        rollups.values_list("namespace_id", "code")
        .annotate(count=Sum("event_count"), total=Sum("value_sum"), maximum=Max("value_max"))
        .order_by()
    ):
        if (namespace_id, code) in totals:
            totals[(namespace_id, code)].add(count, total, maximum)
    result = {}
    for pair, aggregate in totals.items():
        namespace_id, code = pair
        method = methods.get(code)
        if method == Metric.AggregationMethod.LATEST:
            newest = (
                rollups.filter(namespace_id=namespace_id, code=code, latest_at__isnull=False)
                .order_by("-latest_at", "-latest_value")
                .values_list("latest_at", "latest_value")
                .first()
            )
            if newest:
                aggregate.add(0, 0, None, *newest)
        if method == Metric.AggregationMethod.UNIQUE_COUNT:
            result[pair] = _unique_count(tenant_id, namespace_id, code, start, end)
        else:
            result[pair] = aggregate.quantity(method or Metric.AggregationMethod.SUM)
    return result


def _unique_count(tenant_id, namespace_id, code, start, end) -> Decimal:
    metric = Metric.objects.get(tenant_id=tenant_id, code=code)
    rule = _rule(metric)
    seen = set()
    for value, properties in UsageEvent.objects.filter(
        tenant_id=tenant_id,
        namespace_id=namespace_id,
        code=code,
        timestamp__gte=start,
        timestamp__lt=end,
    ).values_list("value", "properties"):
        if rule.matches(properties):
            seen.add(_distinct_key(metric, value, properties))
    return Decimal(len(seen))


def _rule(metric: Metric) -> MetricRule:
    return MetricRule.from_metric(
        metric.pk,
        metric.code,
        metric.aggregation_method,
        metric.aggregation_property,
        metric.filters,
    )


def _distinct_key(metric: Metric, value, properties: dict):
    if metric.aggregation_property:
        return str(properties.get(metric.aggregation_property))
    return str(value)


def namespace_metric_usage(namespace: Namespace, metric: Metric, start, end) -> Decimal:
    return period_totals(
        namespace.tenant_id,
        {(namespace.pk, metric.code)},
        start,
        end,
        {metric.code: metric.aggregation_method},
    )[(namespace.pk, metric.code)]


@dataclass(frozen=True)
class HourlyItem:
    start: dt.datetime
    end: dt.datetime
    quantity: Decimal


def _hour_quantity(aggregate: Aggregate, seen: set | None, method: str) -> Decimal:
    if method == Metric.AggregationMethod.UNIQUE_COUNT:
        return Decimal(len(seen or ()))
    return aggregate.quantity(method)


def hourly_usage(namespace: Namespace, metric: Metric, start, end) -> list[HourlyItem]:
    """The metric's usage in the namespace hour by hour over [start, end) (the first and last
    hours clipped to the window), hours without data left out."""
    if end <= start:
        return []
    method = metric.aggregation_method
    rule = _rule(metric)
    hours: dict[dt.datetime, Aggregate] = defaultdict(Aggregate)
    distinct: dict[dt.datetime, set] = defaultdict(set)
    first_whole, last_whole = ceil_hour(start), floor_hour(end)
    raw = Q()
    if method != Metric.AggregationMethod.UNIQUE_COUNT and first_whole < last_whole:
        for hour, count, total, maximum, latest_at, latest_value in UsageRollup.objects.filter(
            tenant_id=namespace.tenant_id,
            namespace_id=namespace.pk,
            code=metric.code,
            hour__gte=first_whole,
            hour__lt=last_whole,
        ).values_list(
            "hour", "event_count", "value_sum", "value_max", "latest_at", "latest_value"
        ):
            hours[hour].add(count, total, maximum, latest_at, latest_value)
        raw = Q(timestamp__gte=start, timestamp__lt=first_whole) | Q(
            timestamp__gte=last_whole, timestamp__lt=end
        )
    else:
        raw = Q(timestamp__gte=start, timestamp__lt=end)
    for timestamp, value, properties in (
        UsageEvent.objects.filter(
            tenant_id=namespace.tenant_id, namespace_id=namespace.pk, code=metric.code
        )
        .filter(raw)
        .values_list("timestamp", "value", "properties")
    ):
        if not rule.matches(properties):
            continue
        hour = floor_hour(timestamp)
        measure = rule.measure(value, properties)
        hours[hour].add(1, measure or 0, measure, timestamp, measure)
        distinct[hour].add(_distinct_key(metric, value, properties))
    items = []
    for hour in sorted(set(hours) | set(distinct)):
        items.append(
            HourlyItem(
                start=max(hour, start),
                end=min(hour + HOUR, end),
                quantity=_hour_quantity(hours[hour], distinct.get(hour), method),
            )
        )
    return items


def namespace_metrics(namespace: Namespace, start, end) -> list[Metric]:
    """The metrics with usage in the namespace over [start, end), by code."""
    codes = set(
        UsageRollup.objects.filter(
            tenant_id=namespace.tenant_id,
            namespace_id=namespace.pk,
            hour__gte=floor_hour(start),
            hour__lt=end,
        )
        .values_list("code", flat=True)
        .distinct()
    )
    return list(Metric.objects.for_tenant(namespace.tenant).filter(code__in=codes).order_by("code"))


def tenant_usage_summary(tenant, start, end) -> list[dict]:
    """Usage per namespace and metric over [start, end), tenant-wide, from the hourly rollups of
    the whole hours and the events of the partial ones (additive metrics) — the same numbers as
    the namespace reports."""
    metrics = {m.code: m for m in Metric.objects.for_tenant(tenant)}
    pairs = (
        UsageRollup.objects.filter(
            tenant_id=tenant.pk, hour__gte=floor_hour(start), hour__lt=end
        )
        .values_list("namespace_id", "code")
        .distinct()
    )
    pairs = sorted(set(pairs), key=lambda pair: (str(pair[0]), pair[1]))
    namespaces = Namespace.objects.for_tenant(tenant).in_bulk([ns for ns, _ in pairs])
    rows = []
    for namespace_id, code in pairs:
        namespace, metric = namespaces.get(namespace_id), metrics.get(code)
        if namespace is None or metric is None:
            continue
        items = hourly_usage(namespace, metric, start, end)
        if not items:
            continue
        rows.append(
            {
                "namespace": namespace.name,
                "customer": namespace.customer_id,
                "metric": metric,
                "quantity": sum((item.quantity for item in items), Decimal(0)),
            }
        )
    return rows


def monthly_usage(namespace: Namespace, *, months: int = 12, at=None) -> list[dict]:
    """Per calendar month (UTC), newest first, up to `months` back: the usage of each metric."""
    at = at or timezone.now()
    start, end = month_bounds(at)
    rows = []
    for _ in range(months):
        for metric in namespace_metrics(namespace, start, end):
            quantity = namespace_metric_usage(namespace, metric, start, end)
            rows.append({"metric": metric, "quantity": quantity, "start": start, "end": end})
        end = start
        start = month_bounds(start - dt.timedelta(days=1))[0]
        if end <= namespace.created_at - dt.timedelta(days=35):
            break
    return rows


# --- Plans ---------------------------------------------------------------------------------------


def plan_default_quotas(plans: list[SubscriptionPlan]) -> dict:
    """{plan_id: {object_limits, resource_limits, api_limits}} from the plans' limits whose
    feature code is a metric code."""
    if not plans:
        return {}
    tenant_id = plans[0].tenant_id
    rows = list(
        PlanLimit.objects.filter(tenant_id=tenant_id, plan__in=plans).values_list(
            "plan_id", "feature__code", "limit"
        )
    )
    methods = dict(
        Metric.objects.filter(
            tenant_id=tenant_id, code__in={code for _, code, _ in rows}
        ).values_list("code", "aggregation_method")
    )
    result = {
        plan.pk: {"object_limits": {}, "resource_limits": {}, "api_limits": {}} for plan in plans
    }
    for plan_id, code, limit in rows:
        if code in methods:
            result[plan_id][plan_limit_kind(methods[code])][code] = {"maximum": limit}
    return result


def usage_plans(tenant):
    return (
        SubscriptionPlan.objects.for_tenant(tenant)
        .filter(public=True)
        .prefetch_related("prices")
        .order_by("id")
    )


def namespace_subscription(namespace: Namespace) -> Subscription | None:
    """The namespace customer's current subscription: the newest billing one, else the newest
    trial."""
    subscriptions = (
        Subscription.objects.for_tenant(namespace.tenant)
        .filter(customer_id=namespace.customer_id)
        .select_related("plan", "price")
        .order_by("-created_at")
    )
    return (
        subscriptions.filter(status__in=BILLING_STATUSES).first()
        or subscriptions.filter(status=Subscription.Status.TRIAL_ACTIVE).first()
    )
