"""Reads for namespaces: effective limits (the plan's defaults overlaid by the namespace's quotas),
quota periods, and a metric's usage in a namespace (period totals, hourly and monthly
breakdowns) from the hourly rollups, with the events themselves for partial edge hours.

Quota periods are whole hours: they run from the hour in which the customer's billing period
starts to the hour in which it ends (a calendar month in UTC without a billing subscription), so
enforcement at ingestion reads only rollups."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection
from django.db.models import Max, Q, Sum
from django.utils import timezone

from billing_project.db import prepared_cursor
from customers.models import Namespace
from quotas.models import Quota
from subscriptions.models import Metric, PlanLimit, Subscription, SubscriptionPlan
from tenants.api.fields import decimal_text
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


@dataclass
class LimitSources:
    """What effective limits are made of, for a set of customers and namespaces."""

    # {customer_id: (plan_id, period_start, period_end)} of the newest billing subscription.
    subscriptions: dict
    plan_limits: dict  # {plan_id: {(kind, code): limit}}
    quota_specs: dict  # {namespace_id: [spec, ...]} of enabled quotas, oldest first
    methods: dict  # {code: aggregation_method}


_SOURCES_SQL = """
WITH billing AS (
    SELECT DISTINCT ON (customer_id) customer_id, plan_id, current_period_start, valid_until
    FROM subscriptions_subscription
    WHERE tenant_id = %(tenant)s AND customer_id = ANY(%(customers)s)
      AND status = ANY(%(statuses)s)
    ORDER BY customer_id, created_at DESC
)
SELECT 's', b.customer_id, b.plan_id, b.current_period_start, b.valid_until, f.code, pl."limit"
FROM billing b
LEFT JOIN subscriptions_planlimit pl ON pl.plan_id = b.plan_id AND pl.tenant_id = %(tenant)s
LEFT JOIN subscriptions_feature f ON f.id = pl.feature_id AND f.code = ANY(%(codes)s)
UNION ALL
SELECT 'q', namespace_id, NULL, NULL, NULL, spec::text, NULL FROM (
    SELECT namespace_id, spec FROM quotas_quota
    WHERE tenant_id = %(tenant)s AND namespace_id = ANY(%(namespaces)s) AND NOT disable
    ORDER BY created_at, id
) q
UNION ALL
SELECT 'm', NULL, NULL, NULL, NULL, code, NULL FROM (
    SELECT code || ' ' || aggregation_method AS code FROM subscriptions_metric
    WHERE tenant_id = %(tenant)s AND code = ANY(%(codes)s)
) m
"""


def _sources_postgresql(tenant, namespaces: dict, codes) -> LimitSources:
    """One round trip on the ingestion hot path."""
    sources = LimitSources({}, defaultdict(dict), defaultdict(list), {})
    plan_rows = []
    with prepared_cursor(c_timestamps=True) as cursor:
        cursor.execute(
            _SOURCES_SQL,
            {
                "tenant": tenant.pk,
                "customers": list(set(namespaces.values())),
                "statuses": list(BILLING_STATUSES),
                "codes": list(codes),
                "namespaces": list(namespaces),
            },
        )
        rows = cursor.fetchall()
    for kind, owner, plan_id, start, end, text, limit in rows:
        if kind == "s":
            sources.subscriptions[owner] = (plan_id, start, end)
            if text is not None:
                plan_rows.append((plan_id, text, limit))
        elif kind == "q":
            sources.quota_specs[owner].append(_quota_spec(text))
        else:
            code, method = text.rsplit(" ", 1)
            sources.methods[code] = method
    for plan_id, code, limit in plan_rows:
        if code in sources.methods:
            kind = plan_limit_kind(sources.methods[code])
            sources.plan_limits[plan_id][(kind, code)] = limit
    return sources


@functools.lru_cache(maxsize=4096)
def _quota_spec(text: str) -> dict:
    """A quota's spec as read by limits_for_namespaces (which never changes it), parsed once per
    distinct text: namespaces often share their plan's spec."""
    return json.loads(text) or {}


def _sources_orm(tenant, namespaces: dict, codes) -> LimitSources:
    sources = LimitSources({}, defaultdict(dict), defaultdict(list), {})
    for customer_id, plan_id, start, end in (
        Subscription.objects.for_tenant(tenant)
        .filter(customer_id__in=set(namespaces.values()), status__in=BILLING_STATUSES)
        .order_by("customer_id", "-created_at")
        .values_list("customer_id", "plan_id", "current_period_start", "valid_until")
    ):
        sources.subscriptions.setdefault(customer_id, (plan_id, start, end))
    plan_ids = {row[0] for row in sources.subscriptions.values()}
    rows = PlanLimit.objects.for_tenant(tenant).filter(plan_id__in=plan_ids)
    if codes is not None:
        rows = rows.filter(feature__code__in=codes)
    plan_rows = list(rows.values_list("plan_id", "feature__code", "limit")) if plan_ids else []
    metrics = Metric.objects.for_tenant(tenant)
    if codes is not None:
        metrics = metrics.filter(code__in=codes)
    sources.methods = dict(metrics.values_list("code", "aggregation_method"))
    for plan_id, code, limit in plan_rows:
        if code in sources.methods:
            kind = plan_limit_kind(sources.methods[code])
            sources.plan_limits[plan_id][(kind, code)] = limit
    quotas = Quota.objects.for_tenant(tenant).filter(
        namespace_id__in=list(namespaces), disable=False
    )
    for namespace_id, spec in quotas.order_by("created_at", "id").values_list(
        "namespace_id", "spec"
    ):
        sources.quota_specs[namespace_id].append(spec or {})
    return sources


def limit_sources(tenant, namespaces: dict, codes=None) -> LimitSources:
    if codes is not None and connection.vendor == "postgresql":
        return _sources_postgresql(tenant, namespaces, codes)
    return _sources_orm(tenant, namespaces, codes)


def limits_for_namespaces(
    tenant, namespaces: dict, *, codes=None, at: dt.datetime | None = None, sources=None
) -> dict[object, NamespaceLimits]:
    """Effective limits of several namespaces at once: `namespaces` maps a namespace id to its
    customer id. `codes` narrows the metrics looked at (ingestion passes the batch's codes)."""
    at = at or timezone.now()
    sources = sources or limit_sources(tenant, namespaces, codes)
    subscriptions, plan_limits = sources.subscriptions, sources.plan_limits
    by_namespace = sources.quota_specs

    result = {}
    default_start, default_end = month_bounds(at)
    for namespace_id, customer_id in namespaces.items():
        subscription = subscriptions.get(customer_id)
        if subscription is not None:
            plan_id, start, end = subscription
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


# One lookup per (namespace, metric) on the rollups' (namespace, code, hour) index: written per
# pair (LATERAL, not flattened) so that the prepared statement's generic plan cannot prefer a
# scan of the tenant's rollups, whatever the statistics say.
_PERIOD_SQL = """
SELECT n.namespace_id, c.code, r.events, r.total, r.maximum
FROM unnest(%(namespaces)s::uuid[]) AS n(namespace_id)
CROSS JOIN unnest(%(codes)s::text[]) AS c(code)
CROSS JOIN LATERAL (
    SELECT sum(event_count) AS events, sum(value_sum) AS total, max(value_max) AS maximum
    FROM usage_usagerollup
    WHERE namespace_id = n.namespace_id AND code = c.code
      AND hour >= %(start)s AND hour < %(end)s AND tenant_id = %(tenant)s
    OFFSET 0
) r
"""


def period_aggregates(
    tenant_id,
    pairs: set[tuple[object, str]],
    start: dt.datetime,
    end: dt.datetime,
    methods: dict,
) -> dict[tuple[object, str], Aggregate]:
    """The combinable aggregate (count, sum, max, latest) of each (namespace id, code) over
    whole hours [start, end), from the rollups in one query (plus one per `latest` metric)."""
    if not pairs:
        return {}
    totals = {pair: Aggregate() for pair in pairs}
    if connection.vendor == "postgresql" and not any(
        methods.get(code) == Metric.AggregationMethod.LATEST for _, code in pairs
    ):
        # The ingestion guard's read, under its locks: one prepared statement.
        with prepared_cursor() as cursor:
            cursor.execute(
                _PERIOD_SQL,
                {
                    "tenant": tenant_id,
                    "namespaces": list({ns for ns, _ in pairs}),
                    "codes": list({code for _, code in pairs}),
                    "start": start,
                    "end": end,
                },
            )
            for namespace_id, code, count, total, maximum in cursor.fetchall():
                if (namespace_id, code) in totals:
                    totals[(namespace_id, code)].add(count, total, maximum)
        return totals
    rollups = UsageRollup.objects.filter(
        tenant_id=tenant_id,
        namespace_id__in={ns for ns, _ in pairs},
        code__in={code for _, code in pairs},
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
    for (namespace_id, code), aggregate in totals.items():
        if methods.get(code) == Metric.AggregationMethod.LATEST:
            newest = (
                rollups.filter(namespace_id=namespace_id, code=code, latest_at__isnull=False)
                .order_by("-latest_at", "-latest_value")
                .values_list("latest_at", "latest_value")
                .first()
            )
            if newest:
                aggregate.add(0, 0, None, *newest)
    return totals


def period_totals(
    tenant_id, pairs: set[tuple[object, str]], start, end, methods: dict
) -> dict[tuple[object, str], Decimal]:
    """The quota-period usage of each (namespace id, code) over whole hours [start, end)."""
    unique = {
        pair for pair in pairs if methods.get(pair[1]) == Metric.AggregationMethod.UNIQUE_COUNT
    }
    aggregates = period_aggregates(tenant_id, pairs - unique, start, end, methods)
    result = {
        pair: aggregate.quantity(methods.get(pair[1]) or Metric.AggregationMethod.SUM)
        for pair, aggregate in aggregates.items()
    }
    for namespace_id, code in unique:
        result[(namespace_id, code)] = _unique_count(tenant_id, namespace_id, code, start, end)
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
    aggregate: Aggregate
    distinct: frozenset
    method: str

    @property
    def quantity(self) -> Decimal:
        if self.method == Metric.AggregationMethod.UNIQUE_COUNT:
            return Decimal(len(self.distinct))
        return self.aggregate.quantity(self.method)


def hourly_usage(namespace: Namespace, metric: Metric, start, end) -> list[HourlyItem]:
    """The metric's usage in the namespace hour by hour over [start, end) (the first and last
    hours clipped to the window), hours without data left out: rollups for the whole hours, the
    events for the partial ones."""
    if end <= start:
        return []
    method = metric.aggregation_method
    rule = _rule(metric)
    hours: dict[dt.datetime, Aggregate] = defaultdict(Aggregate)
    distinct: dict[dt.datetime, set] = defaultdict(set)
    first_whole, last_whole = ceil_hour(start), floor_hour(end)
    if method != Metric.AggregationMethod.UNIQUE_COUNT and first_whole < last_whole:
        for hour, count, total, maximum, latest_at, latest_value in UsageRollup.objects.filter(
            tenant_id=namespace.tenant_id,
            namespace_id=namespace.pk,
            code=metric.code,
            hour__gte=first_whole,
            hour__lt=last_whole,
        ).values_list("hour", "event_count", "value_sum", "value_max", "latest_at", "latest_value"):
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
    return [
        HourlyItem(
            start=max(hour, start),
            end=min(hour + HOUR, end),
            aggregate=hours[hour],
            distinct=frozenset(distinct.get(hour, ())),
            method=method,
        )
        for hour in sorted(set(hours) | set(distinct))
    ]


def window_usage(items: list[HourlyItem], method: str) -> Decimal:
    """The metric's aggregate over the hours of `items` (what a period bills, not their sum)."""
    if method == Metric.AggregationMethod.UNIQUE_COUNT:
        return Decimal(len(frozenset().union(*(item.distinct for item in items))))
    total = Aggregate()
    for item in items:
        a = item.aggregate
        total.add(a.count, a.total, a.maximum, a.latest_at, a.latest_value)
    return total.quantity(method)


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
        UsageRollup.objects.filter(tenant_id=tenant.pk, hour__gte=floor_hour(start), hour__lt=end)
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


# --- Reports -------------------------------------------------------------------------------------


def quota_report(namespace: Namespace, *, with_usage: bool, at=None) -> dict:
    """`quota/limits` (with_usage False) and `quota/usage`: effective limits by kind, with the
    current quota period's usage of each bound metric."""
    limits = namespace_limits(namespace, at=at)
    codes = {code for _, code in limits.maximums} | set(limits.api_limits)
    metrics = {
        m.code: m for m in Metric.objects.for_tenant(namespace.tenant).filter(code__in=codes)
    }
    usage = {}
    if with_usage:
        usage = period_totals(
            namespace.tenant_id,
            {(namespace.pk, code) for _, code in limits.maximums},
            limits.period_start,
            limits.period_end,
            {code: metric.aggregation_method for code, metric in metrics.items()},
        )
    report = {"objects": {}, "resources": {}, "apis": {}}
    for (kind, code), maximum in sorted(limits.maximums.items()):
        entry = {
            "limit": {"maximum": maximum},
            "display_name": metrics[code].name if code in metrics else code,
        }
        if with_usage:
            entry["usage"] = {"current": decimal_text(usage.get((namespace.pk, code), Decimal(0)))}
        report[KIND_OF_REPORT[kind]][code] = entry
    for code, api_limit in sorted(limits.api_limits.items()):
        report["apis"][code] = {"api_limit": api_limit}
    return report


def default_window(namespace: Namespace, at=None) -> tuple[dt.datetime, dt.datetime]:
    """The customer's current billing period, else the current calendar month (UTC)."""
    subscription = namespace_subscription(namespace)
    if subscription is not None:
        return subscription.current_period_start, subscription.valid_until
    return month_bounds(at or timezone.now())


def current_usage(namespace: Namespace, start, end) -> dict:
    """Usage and cost per metric in the namespace over [start, end) (default: the current
    period), priced by the customer's subscription items; fixed fees of the plan and add-ons are
    listed (fixed: true) on the customer's default namespace."""
    from usage.selectors import item_charge

    subscription = namespace_subscription(namespace)
    currency = (
        subscription.currency
        if subscription is not None
        else namespace.customer.currency or namespace.tenant.currency
    )
    items, total = [], 0
    metered = {}
    fixed = []
    if subscription is not None:
        for item in (
            subscription.items.select_related("metric", "price", "price__product", "product")
            .exclude(active_to__isnull=False, active_to__lte=start)
            .exclude(active_from__isnull=False, active_from__gte=end)
            .order_by("created_at", "id")
        ):
            if item.item_type == item.ItemType.USAGE and item.metric_id:
                metered.setdefault(item.metric.code, item)
            elif item.item_type != item.ItemType.USAGE:
                fixed.append(item)
    metrics = {m.code: m for m in namespace_metrics(namespace, start, end)}
    metrics.update({code: item.metric for code, item in metered.items()})
    for code in sorted(metrics):
        metric = metrics[code]
        hours = hourly_usage(namespace, metric, start, end)
        quantity = window_usage(hours, metric.aggregation_method)
        amount, billable = 0, quantity
        if code in metered:
            charge = item_charge(metered[code], quantity, currency)
            amount, billable = charge.amount, charge.quantity
        total += amount
        items.append(
            {
                "usage_type": code,
                "quantity": decimal_text(quantity),
                "unit_name": metric.unit_name,
                "amount": amount,
                "currency_code": currency,
                "start_timestamp": start,
                "end_timestamp": end,
                "fixed": False,
                "status": "ACTIVE" if hours else "NO_DATA",
                "quantity_billable": decimal_text(billable),
            }
        )
    if namespace.pk == namespace.customer.default_namespace_id:
        from subscriptions.services import item_fee

        for item in fixed:
            amount = item_fee(item.price, item.quantity)
            total += amount
            items.append(
                {
                    "usage_type": subscription.plan.code_name
                    if item.item_type == item.ItemType.PLAN
                    else item.product.name,
                    "quantity": decimal_text(Decimal(item.quantity)),
                    "unit_name": "seats" if item.item_type == item.ItemType.PLAN else "units",
                    "amount": amount,
                    "currency_code": currency,
                    "start_timestamp": subscription.current_period_start,
                    "end_timestamp": subscription.valid_until,
                    "fixed": True,
                    "status": "ACTIVE",
                    "quantity_billable": decimal_text(Decimal(item.quantity)),
                }
            )
    return {"items": items, "total_cost": total, "currency_code": currency}


HOURLY_QUERY_SALT = "quotas.hourly_usage_details"


def usage_details(namespace: Namespace, start, end) -> list[dict]:
    """One detail per metric over [start, end); its quantity is the sum of its hourly items
    (for gauges, latest/max/unique_count, that is unit-hours), and `hourly_breakdown_query`
    names exactly those hours."""
    from django.core import signing

    details = []
    for metric in namespace_metrics(namespace, start, end):
        hours = hourly_usage(namespace, metric, start, end)
        if not hours:
            continue
        query = signing.dumps(
            {
                "t": str(namespace.tenant_id),
                "n": str(namespace.pk),
                "c": metric.code,
                "f": start.isoformat(),
                "u": end.isoformat(),
            },
            salt=HOURLY_QUERY_SALT,
            compress=True,
        )
        details.append(
            {
                **_usage_row(namespace, metric, start, end),
                "quantity": decimal_text(sum((h.quantity for h in hours), Decimal(0))),
                "hourly_breakdown_query": query,
            }
        )
    return details


def _usage_row(namespace, metric, start, end) -> dict:
    return {
        "object_name": metric.name,
        "namespace": namespace.name,
        "usage_type": metric.code,
        "unit_name": metric.unit_name,
        "start_timestamp": start,
        "end_timestamp": end,
    }


def hourly_usage_details(namespace: Namespace, query: str) -> list[dict] | None:
    """The hourly items of a detail's `hourly_breakdown_query`; None when the query is not one
    of this namespace's."""
    from django.core import signing

    try:
        decoded = signing.loads(query, salt=HOURLY_QUERY_SALT)
        if decoded["t"] != str(namespace.tenant_id) or decoded["n"] != str(namespace.pk):
            return None
        start = dt.datetime.fromisoformat(decoded["f"])
        end = dt.datetime.fromisoformat(decoded["u"])
        metric = Metric.objects.for_tenant(namespace.tenant).get(code=decoded["c"])
    except (signing.BadSignature, KeyError, TypeError, ValueError, Metric.DoesNotExist):
        return None
    return [
        {
            **_usage_row(namespace, metric, hour.start, hour.end),
            "quantity": decimal_text(hour.quantity),
        }
        for hour in hourly_usage(namespace, metric, start, end)
    ]


def namespace_invoices(namespace: Namespace, *, at=None):
    from invoicing.models import Invoice

    return (
        Invoice.objects.for_tenant(namespace.tenant)
        .filter(customer_id=namespace.customer_id, number__isnull=False)
        .order_by("-id")
    )


def namespace_subscriptions(namespace: Namespace) -> list[dict]:
    """The customer's subscriptions, newest first, with their add-ons and the periods already
    billed (from their invoices: billed periods are stored, never recomputed)."""
    from invoicing.models import Invoice

    subscriptions = list(
        Subscription.objects.for_tenant(namespace.tenant)
        .filter(customer_id=namespace.customer_id)
        .select_related("plan")
        .order_by("-created_at")
    )
    addon_plans = {
        price_id: code_name
        for price_id, code_name in SubscriptionPlan.objects.for_tenant(namespace.tenant)
        .filter(is_addon=True)
        .values_list("prices__id", "code_name")
        if price_id is not None
    }
    now = timezone.now()
    rows = []
    for subscription in subscriptions:
        addons = sorted(
            {
                addon_plans.get(price_id, str(price_id))
                for price_id in subscription.items.filter(item_type="addon")
                .exclude(active_to__isnull=False, active_to__lte=now)
                .values_list("price_id", flat=True)
            }
        )
        periods = (
            Invoice.objects.filter(
                subscription=subscription,
                period_start__isnull=False,
                period_end__lte=subscription.current_period_start,
            )
            .exclude(status=Invoice.Status.VOID)
            .order_by("-period_start")
            .values_list("period_start", "period_end", "number")
        )
        seen, previous = set(), []
        for period_start, period_end, number in periods:
            if (period_start, period_end) in seen:
                continue
            seen.add((period_start, period_end))
            previous.append(
                {"period_start": period_start, "period_end": period_end, "invoice": number}
            )
        rows.append(
            {
                "id": subscription.pk,
                "plan": subscription.plan,
                "status": subscription.status,
                "currency": subscription.currency,
                "schedule": subscription.schedule,
                "seat_number": subscription.seat_number,
                "started_at": subscription.started_at,
                "current_period_start": subscription.current_period_start,
                "valid_until": subscription.valid_until,
                "addons": addons,
                "previous_billing_periods": previous,
            }
        )
    return rows
