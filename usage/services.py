"""Writes for usage: event ingestion (single and batch, exactly once), seed-004 usages, marking
usage billed, rollup maintenance and usage-limit evaluation.

Ingestion is the hot path. It validates a batch by hand (no per-event serializer), resolves every
reference with one query per kind, and stores the batch with ONE statement on PostgreSQL: a
multi-row insert from arrays with `ON CONFLICT (tenant_id, event_id) DO NOTHING` whose RETURNING
rows feed the hourly-rollup upsert in the same statement, so a duplicate is never counted twice,
whatever the races. SQLite (development) takes an ORM path with the same results.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from billing_project.db import prepared_cursor
from customers.models import Customer, Namespace, UsageLimit
from subscriptions.models import Metric, Subscription, SubscriptionItem
from subscriptions.selectors import as_uuid
from tenants.api.errors import Conflict
from usage.metering import AGGREGATIONS_NEEDING_VALUE, Aggregate, MetricRule, as_decimal
from usage.models import (
    VALUE_DECIMAL_PLACES,
    VALUE_MAX_DIGITS,
    UsageEvent,
    UsageReferenceSequence,
    UsageRollup,
)
from webhooks.services import emit

logger = logging.getLogger(__name__)

TIMESTAMP_MAX_AGE = dt.timedelta(days=35)
TIMESTAMP_MAX_AHEAD = dt.timedelta(minutes=5)
BATCH_MAX_EVENTS = 1000
EVENT_ID_MAX_LENGTH = 255
# Subscriptions whose events are accepted (subscriptions.services.BILLABLE_STATUSES).
BILLING_STATUSES = frozenset({"active", "pending_cancel", "overdue_payment_open"})
# Usage limits are re-evaluated after ingestion at most this often per customer.
LIMIT_EVALUATION_DEBOUNCE_SECONDS = 30


@dataclass(slots=True)
class EventRow:
    """One validated event, ready to insert."""

    id: str  # a UUIDv7 in text form (_uuid7_texts)
    event_id: str
    code: str
    customer_id: uuid.UUID
    namespace_id: uuid.UUID
    subscription_id: uuid.UUID | None
    value: Decimal | None
    properties: dict
    timestamp: dt.datetime
    # The metric's reading of the event: its measure and whether it passes the metric's filters.
    measure: Decimal | None
    counted: bool
    usage_reference: int | None = None
    usage_start: dt.datetime | None = None
    usage_end: dt.datetime | None = None
    description: str = ""
    namespace_name: str = ""
    created_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class NamespaceRow:
    id: uuid.UUID
    name: str
    customer_id: uuid.UUID


@dataclass
class IngestResult:
    accepted: int
    duplicates: int
    inserted: list[EventRow] = field(default_factory=list)
    rows: list[EventRow] = field(default_factory=list)


# Extension point for the quotas app (issue 5): each guard is called inside the ingestion
# transaction, after the batch's new events are inserted (duplicates excluded) and before commit,
# as guard(tenant, namespace_rows: dict[namespace_id, NamespaceRow], events: list[EventRow]).
# Raising (e.g. tenants.api.errors.QuotaExceeded) refuses the request and stores nothing.
# Register from the guarding app's AppConfig.ready(); usage never imports it.
IngestionGuard = Callable[[object, dict, list[EventRow]], None]
INGESTION_GUARDS: list[IngestionGuard] = []


# --- Parsing ------------------------------------------------------------------------------------


class _Errors:
    """Validation errors keyed `events.<i>.<field>` (batch) or `<field>` (single event)."""

    def __init__(self, batch: bool):
        self.batch = batch
        self.by_key: dict[str, list[str]] = {}

    def add(self, index: int, name: str, message: str) -> None:
        key = f"events.{index}.{name}" if self.batch else name
        self.by_key.setdefault(key, []).append(message)

    def raise_if_any(self) -> None:
        if self.by_key:
            raise ValidationError(self.by_key)


def parse_timestamp(raw) -> dt.datetime | None:
    """RFC 3339 (a missing offset means UTC) or seconds since the epoch; None if neither."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        try:
            return dt.datetime.fromtimestamp(raw, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(raw, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(raw.strip().replace(" ", "T", 1))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _decimal_fits(value: Decimal) -> bool:
    exponent = value.as_tuple().exponent
    integer_digits = value.adjusted() + 1
    return exponent >= -VALUE_DECIMAL_PLACES and integer_digits <= (
        VALUE_MAX_DIGITS - VALUE_DECIMAL_PLACES
    )


@dataclass(slots=True)
class _Draft:
    index: int
    event_id: str
    code: str
    subscription_id: uuid.UUID | None
    customer_ref: str | None
    namespace_name: str | None
    value: Decimal | None
    properties: dict
    timestamp: dt.datetime


def _parse_event(raw, index: int, errors: _Errors, now: dt.datetime) -> _Draft | None:
    if not isinstance(raw, dict):
        errors.add(index, "non_field_errors", "event must be an object")
        return None
    ok = True
    event_id = raw.get("event_id")
    if event_id is None or event_id == "":
        errors.add(index, "event_id", "event_id should not be empty")
        ok = False
    elif not isinstance(event_id, str) or len(event_id) > EVENT_ID_MAX_LENGTH:
        errors.add(index, "event_id", "event_id must be a string of at most 255 characters")
        ok = False
    code = raw.get("code")
    if code is None or code == "":
        errors.add(index, "code", "code should not be empty")
        ok = False
    elif not isinstance(code, str):
        errors.add(index, "code", "code must be a string")
        ok = False
    subscription_id = None
    subscription = raw.get("subscription")
    if subscription is not None:
        try:
            subscription_id = uuid.UUID(str(subscription))
        except ValueError:
            errors.add(index, "subscription", "subscription must be a UUID")
            ok = False
    customer_ref = raw.get("customer")
    if customer_ref is not None and not isinstance(customer_ref, str):
        errors.add(index, "customer", "customer must be a customer id or reference")
        ok = False
    namespace_name = raw.get("namespace")
    if namespace_name is not None and not isinstance(namespace_name, str):
        errors.add(index, "namespace", "namespace must be a namespace name")
        ok = False
    if subscription is None and not customer_ref and not namespace_name:
        errors.add(index, "subscription", "subscription or customer should not be empty")
        ok = False
    value = None
    raw_value = raw.get("value")
    if raw_value is not None:
        value = as_decimal(raw_value)
        if value is None:
            errors.add(index, "value", "value must be a number")
            ok = False
        elif not _decimal_fits(value):
            errors.add(
                index, "value", "value must have at most 20 digits before and 10 after the point"
            )
            ok = False
    properties = raw.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        errors.add(index, "properties", "properties must be an object")
        ok = False
    raw_timestamp = raw.get("timestamp")
    if raw_timestamp is None:
        timestamp = now
    else:
        timestamp = parse_timestamp(raw_timestamp)
        if timestamp is None:
            errors.add(index, "timestamp", "timestamp must be an RFC 3339 date-time")
            ok = False
        elif timestamp < now - TIMESTAMP_MAX_AGE:
            errors.add(index, "timestamp", "timestamp must be at most 35 days old")
            ok = False
        elif timestamp > now + TIMESTAMP_MAX_AHEAD:
            errors.add(index, "timestamp", "timestamp must be at most 5 minutes in the future")
            ok = False
    if not ok:
        return None
    return _Draft(
        index,
        event_id,
        code,
        subscription_id,
        customer_ref,
        namespace_name,
        value,
        properties,
        timestamp,
    )


# --- Reference resolution (one query per kind, locks on PostgreSQL) ----------------------------


def _is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def _metric_rules(tenant, codes: set[str], *, lock: bool) -> dict[str, MetricRule]:
    """The tenant's metrics for `codes`. On PostgreSQL they are held FOR KEY SHARE: a metric
    change that rebuilds rollups waits for in-flight ingestion (and vice versa)."""
    if not codes:
        return {}
    if lock and _is_postgresql():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, code, aggregation_method, aggregation_property, filters "
                "FROM subscriptions_metric WHERE tenant_id = %s AND code = ANY(%s) FOR KEY SHARE",
                [tenant.pk, list(codes)],
            )
            rows = cursor.fetchall()
        rows = [
            (r[0], r[1], r[2], r[3], json.loads(r[4]) if isinstance(r[4], str) else r[4])
            for r in rows
        ]
    else:
        rows = (
            Metric.objects.for_tenant(tenant)
            .filter(code__in=codes)
            .values_list("id", "code", "aggregation_method", "aggregation_property", "filters")
        )
    return {row[1]: MetricRule.from_metric(*row) for row in rows}


def _subscriptions_locked(tenant, ids: set[uuid.UUID]) -> dict[uuid.UUID, tuple[str, uuid.UUID]]:
    """{id: (status, customer_id)}. On PostgreSQL the rows are held FOR KEY SHARE until commit,
    so a renewal (which holds them FOR UPDATE from reading usage to marking it billed) can never
    see these events half-way: they commit before its read or after its mark."""
    if not ids:
        return {}
    if _is_postgresql():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, status, customer_id FROM subscriptions_subscription "
                "WHERE tenant_id = %s AND id = ANY(%s) FOR KEY SHARE",
                [tenant.pk, list(ids)],
            )
            return {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
    return {
        row[0]: (row[1], row[2])
        for row in Subscription.objects.for_tenant(tenant)
        .filter(id__in=ids)
        .values_list("id", "status", "customer_id")
    }


def _customers(tenant, ids: set[uuid.UUID], references: set[str]) -> tuple[dict, dict]:
    """({id: (status, default_namespace_id, default_namespace_name, has_usage_limits)},
    {reference: id}). Whether a customer has usage limits rides along, so the post-ingestion
    nudge (_usage_limits_nudge) costs no query of its own."""
    if not ids and not references:
        return {}, {}
    by_id, by_reference = {}, {}
    if _is_postgresql():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.id, c.reference, c.status, c.default_namespace_id, n.name, "
                "EXISTS (SELECT 1 FROM customers_usagelimit l WHERE l.customer_id = c.id) "
                "FROM customers_customer c "
                "LEFT JOIN customers_namespace n ON n.id = c.default_namespace_id "
                "WHERE c.tenant_id = %s AND (c.id = ANY(%s) OR c.reference = ANY(%s))",
                [tenant.pk, list(ids), list(references)],
            )
            rows = cursor.fetchall()
    else:
        condition = Q(id__in=ids) if ids else Q(pk__in=[])
        if references:
            condition |= Q(reference__in=references)
        rows = (
            Customer.objects.for_tenant(tenant)
            .filter(condition)
            .annotate(has_limits=Exists(UsageLimit.objects.filter(customer_id=OuterRef("pk"))))
            .values_list(
                "id",
                "reference",
                "status",
                "default_namespace_id",
                "default_namespace__name",
                "has_limits",
            )
        )
    for pk, reference, status, namespace_id, namespace_name, has_limits in rows:
        by_id[pk] = (status, namespace_id, namespace_name, has_limits)
        if reference:
            by_reference.setdefault(reference, pk)
    return by_id, by_reference


def _namespaces(tenant, names: set[str], ids: set[uuid.UUID]) -> dict[object, NamespaceRow]:
    """Namespaces by name and by id (both keys point at the same row)."""
    if not names and not ids:
        return {}
    rows = {}
    condition = Q(name__in=names) if names else Q(pk__in=[])
    if ids:
        condition |= Q(id__in=ids)
    for pk, name, customer_id in (
        Namespace.objects.for_tenant(tenant)
        .filter(condition)
        .values_list("id", "name", "customer_id")
    ):
        row = NamespaceRow(pk, name, customer_id)
        rows[pk] = row
        rows[name] = row
    return rows


def _billing_subscription_for(tenant, customer_codes: set[tuple[uuid.UUID, str]]) -> dict:
    """For events naming only a customer (or namespace): {(customer_id, code): subscription_id},
    the customer's billing subscription with a metered item for the metric, else its newest
    billing one, else None (the event then counts for the namespace but is not billed)."""
    if not customer_codes:
        return {}
    newest: dict = {}
    billing_ids = []
    for pk, customer_id in (
        Subscription.objects.for_tenant(tenant)
        .filter(
            customer_id__in={customer_id for customer_id, _ in customer_codes},
            status__in=BILLING_STATUSES,
        )
        .order_by("customer_id", "-created_at")
        .values_list("id", "customer_id")
    ):
        newest.setdefault(customer_id, pk)
        billing_ids.append(pk)
    if not newest:
        return {}
    metered = {}
    for subscription_id, customer_id, code in (
        SubscriptionItem.objects.for_tenant(tenant)
        .filter(
            subscription_id__in=billing_ids,
            item_type=SubscriptionItem.ItemType.USAGE,
            metric__code__in={code for _, code in customer_codes},
        )
        .order_by("-subscription__created_at")
        .values_list("subscription_id", "subscription__customer_id", "metric__code")
    ):
        metered.setdefault((customer_id, code), subscription_id)
    return {
        (customer_id, code): metered.get((customer_id, code), newest.get(customer_id))
        for customer_id, code in customer_codes
    }


# Every reference of a request in one round trip (what _metric_rules, _subscriptions_locked,
# _namespaces and _customers read, with the same locks): the customers named by id or reference,
# and those of the named subscriptions and namespaces; and which of `stored` are stored already.
_REFERENCES_SQL = """
WITH m AS (
    SELECT id, code, aggregation_method, aggregation_property, filters FROM subscriptions_metric
    WHERE tenant_id = %(tenant)s AND code = ANY(%(codes)s) FOR KEY SHARE
), s AS (
    SELECT id, status, customer_id FROM subscriptions_subscription
    WHERE tenant_id = %(tenant)s AND id = ANY(%(subscriptions)s) FOR KEY SHARE
), n AS (
    SELECT id, name, customer_id FROM customers_namespace
    WHERE tenant_id = %(tenant)s AND name = ANY(%(namespaces)s)
), named AS (
    SELECT unnest(%(customers)s::uuid[]) AS id
    UNION SELECT customer_id FROM s
    UNION SELECT customer_id FROM n
    UNION SELECT id FROM customers_customer
    WHERE tenant_id = %(tenant)s AND reference = ANY(%(references)s)
)
SELECT 'm', id, code, aggregation_method, aggregation_property, NULL::uuid, NULL::bool,
       filters::text FROM m
UNION ALL SELECT 's', id, status, NULL, NULL, customer_id, NULL, NULL FROM s
UNION ALL SELECT 'n', id, name, NULL, NULL, customer_id, NULL, NULL FROM n
UNION ALL SELECT 'e', NULL, e.event_id, NULL, NULL, NULL, NULL, NULL
FROM unnest(%(stored)s::text[]) AS wanted(event_id)
CROSS JOIN LATERAL (
    SELECT event_id FROM usage_usageevent
    WHERE tenant_id = %(tenant)s AND event_id = wanted.event_id
    OFFSET 0  -- not flattened: one unique-index probe per id, whatever the statistics say
) e
UNION ALL
SELECT 'c', c.id, c.reference, c.status, dn.name, c.default_namespace_id,
       EXISTS (SELECT 1 FROM customers_usagelimit l WHERE l.customer_id = c.id), NULL
FROM customers_customer c LEFT JOIN customers_namespace dn ON dn.id = c.default_namespace_id
WHERE c.id = ANY(ARRAY(SELECT id FROM named)) AND c.tenant_id = %(tenant)s
"""


def _references_postgresql(
    tenant, codes, subscription_ids, namespace_names, customer_ids, references, stored
):
    """(metrics, subscriptions, namespaces, customers, customers by reference, stored event
    ids), shaped as the per-kind readers return them, from one statement."""
    with prepared_cursor() as cursor:
        cursor.execute(
            _REFERENCES_SQL,
            {
                "tenant": tenant.pk,
                "codes": list(codes),
                "subscriptions": list(subscription_ids),
                "namespaces": list(namespace_names),
                "customers": list(customer_ids),
                "references": list(references),
                "stored": list(stored),
            },
        )
        rows = cursor.fetchall()
    metrics, subscriptions, namespaces, customers, by_reference = {}, {}, {}, {}, {}
    found_stored = set()
    for kind, pk, text_a, text_b, text_c, other_id, flag, filters in rows:
        if kind == "m":
            metrics[text_a] = MetricRule.from_metric(
                pk, text_a, text_b, text_c, json.loads(filters) if filters else {}
            )
        elif kind == "s":
            subscriptions[pk] = (text_a, other_id)
        elif kind == "n":
            row = NamespaceRow(pk, text_a, other_id)
            namespaces[pk] = namespaces[text_a] = row
        elif kind == "e":
            found_stored.add(text_a)
        else:
            customers[pk] = (text_b, other_id, text_c, flag)
            if text_a:
                by_reference.setdefault(text_a, pk)
    return metrics, subscriptions, namespaces, customers, by_reference, found_stored


def _resolve(
    tenant, drafts: list[_Draft], errors: _Errors, *, stored_check=()
) -> tuple[list[EventRow], dict, set, set]:
    """Check every reference of the parsed events; returns the rows, the namespaces used, the
    ids of the customers that have usage limits, and which event ids of `stored_check` are
    stored already (read in the same round trip)."""
    codes = {d.code for d in drafts}
    subscription_ids = {d.subscription_id for d in drafts} - {None}
    customer_ids, references = set(), set()
    for d in drafts:
        if d.customer_ref:
            as_id = as_uuid(d.customer_ref)
            if as_id is not None:
                customer_ids.add(as_id)
            references.add(d.customer_ref)
    namespace_names = {d.namespace_name for d in drafts if d.namespace_name}
    if _is_postgresql():
        metrics, subscriptions, namespaces, customers, customer_by_reference, stored = (
            _references_postgresql(
                tenant,
                codes,
                subscription_ids,
                namespace_names,
                customer_ids,
                references,
                stored_check,
            )
        )
    else:
        stored = {e for e in stored_check if event_exists(tenant=tenant, event_id=e)}
        metrics = _metric_rules(tenant, codes, lock=True)
        subscriptions = _subscriptions_locked(tenant, subscription_ids)
        customer_ids |= {customer_id for _, customer_id in subscriptions.values()}
        namespaces = _namespaces(tenant, namespace_names, set())
        customer_ids |= {
            namespaces[name].customer_id for name in namespace_names if name in namespaces
        }
        customers, customer_by_reference = _customers(tenant, customer_ids, references)

    resolved: list[tuple[_Draft, MetricRule, uuid.UUID, uuid.UUID | None]] = []
    needs_subscription: set[tuple[uuid.UUID, str]] = set()
    for d in drafts:
        i = d.index
        metric = metrics.get(d.code)
        if metric is None:
            errors.add(i, "code", f"code {d.code!r} is not a known metric")
        customer_id = None
        if d.subscription_id is not None:
            found = subscriptions.get(d.subscription_id)
            if found is None:
                errors.add(i, "subscription", f"subscription {d.subscription_id} was not found")
                continue
            status, customer_id = found
            if status not in BILLING_STATUSES:
                errors.add(
                    i,
                    "subscription",
                    f"subscription {d.subscription_id} is not billing (it is {status})",
                )
                continue
        if d.customer_ref:
            as_id = as_uuid(d.customer_ref)
            named = as_id if as_id in customers else customer_by_reference.get(d.customer_ref)
            if named is None:
                errors.add(i, "customer", f"customer {d.customer_ref!r} was not found")
                continue
            if customer_id is not None and named != customer_id:
                errors.add(i, "customer", "customer is not the subscription's customer")
                continue
            customer_id = named
        if d.namespace_name:
            namespace = namespaces.get(d.namespace_name)
            if namespace is None:
                errors.add(i, "namespace", f"namespace {d.namespace_name!r} was not found")
                continue
            if customer_id is not None and namespace.customer_id != customer_id:
                errors.add(i, "namespace", "namespace does not belong to the event's customer")
                continue
            customer_id = namespace.customer_id
        customer = customers.get(customer_id)
        if customer is None:
            errors.add(i, "customer", f"customer {customer_id} was not found")
            continue
        if customer[0] != Customer.Status.ACTIVE:
            errors.add(i, "customer", f"customer {customer_id} is disabled")
            continue
        if metric is None:
            continue
        if d.subscription_id is None:
            needs_subscription.add((customer_id, d.code))
        resolved.append((d, metric, customer_id, d.subscription_id))

    chosen = _billing_subscription_for(tenant, needs_subscription)
    extra = {s for s in chosen.values() if s is not None} - set(subscriptions)
    if extra:
        # Hold the subscriptions these events are billed to as well (see _subscriptions_locked).
        subscriptions.update(_subscriptions_locked(tenant, extra))

    rows = []
    ids = iter(_uuid7_texts(len(resolved)))
    for d, metric, customer_id, subscription_id in resolved:
        if subscription_id is None:
            subscription_id = chosen.get((customer_id, d.code))
        if d.namespace_name:
            namespace_id, namespace_name = namespaces[d.namespace_name].id, d.namespace_name
        else:
            namespace_id, namespace_name = customers[customer_id][1], customers[customer_id][2]
        measure = metric.measure(d.value, d.properties)
        needs_value = metric.aggregation_method in AGGREGATIONS_NEEDING_VALUE
        numeric_property = (
            needs_value
            and metric.aggregation_property
            and d.properties.get(metric.aggregation_property) is not None
        )
        if numeric_property and (measure is None or not _decimal_fits(measure)):
            errors.add(
                d.index, "properties", f"properties.{metric.aggregation_property} must be a number"
            )
            continue
        if measure is None and needs_value:
            errors.add(
                d.index, "value", f"value should not be empty (metric {metric.code} sums values)"
            )
            continue
        rows.append(
            EventRow(
                id=next(ids),
                event_id=d.event_id,
                code=d.code,
                customer_id=customer_id,
                namespace_id=namespace_id,
                subscription_id=subscription_id,
                value=d.value,
                properties=d.properties,
                timestamp=d.timestamp,
                measure=measure,
                counted=metric.matches(d.properties),
                namespace_name=namespace_name,
            )
        )
    namespace_rows = {row.id: row for key, row in namespaces.items() if isinstance(key, uuid.UUID)}
    for row in rows:
        # A customer's default namespace came with the customer: no second query for it.
        customer = customers.get(row.customer_id)
        if row.namespace_id not in namespace_rows and customer and customer[1] == row.namespace_id:
            namespace_rows[row.namespace_id] = NamespaceRow(
                row.namespace_id, customer[2], row.customer_id
            )
    missing = {r.namespace_id for r in rows} - set(namespace_rows)
    if missing and INGESTION_GUARDS:
        namespace_rows.update(
            {
                k: v
                for k, v in _namespaces(tenant, set(), missing).items()
                if isinstance(k, uuid.UUID)
            }
        )
    limited = {pk for pk, customer in customers.items() if customer[3]}
    return rows, namespace_rows, limited, stored


# --- Storing ------------------------------------------------------------------------------------


def _uuid7_texts(count: int) -> list[str]:
    """`count` UUIDv7s (RFC 9562) as text, in order: one millisecond timestamp for the batch and a
    12-bit counter (method 1 of the RFC) before 62 random bits. uuid6.uuid7() costs ten times
    as much per id, and bumps its timestamp 1 ms per call within a millisecond, so at batch
    rates its ids would run ahead of the clock."""
    high = ((time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | 0x2 << 62
    randomness = os.urandom(8 * count)
    texts = []
    for index in range(count):
        random_b = int.from_bytes(randomness[8 * index : 8 * index + 8], "big") & _RAND_B
        value = high | (index & 0xFFF) << 64 | random_b
        digits = f"{value:032x}"
        texts.append(f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}")
    return texts


_RAND_B = (1 << 62) - 1

# The batch travels as ONE jsonb parameter (json.dumps is C code; binding 15 Python-built arrays
# of 1,000 elements each cost more than the insert itself).
_PG_INSERT = """
WITH incoming AS (
    SELECT * FROM jsonb_to_recordset(%s::jsonb) AS r(
        id uuid, event_id text, code text, customer_id uuid, namespace_id uuid,
        subscription_id uuid, value numeric, properties jsonb, ts timestamptz, measure numeric,
        counted bool, usage_reference bigint, usage_start timestamptz, usage_end timestamptz,
        description text)
), inserted AS (
    INSERT INTO usage_usageevent (
        id, tenant_id, created_at, event_id, code, customer_id, namespace_id, subscription_id,
        value, properties, "timestamp", usage_reference, usage_start, usage_end, description
    )
    SELECT id, %s, %s, event_id, code, customer_id, namespace_id, subscription_id, value,
           coalesce(properties, '{}'::jsonb), ts, usage_reference, usage_start, usage_end,
           coalesce(description, '')
    FROM incoming
    ON CONFLICT (tenant_id, event_id) DO NOTHING
    RETURNING event_id
), rolled AS (
    INSERT INTO usage_usagerollup AS t (
        tenant_id, subscription_id, namespace_id, code, hour, event_count, value_sum, value_max,
        latest_at, latest_value
    )
    SELECT %s, r.subscription_id, r.namespace_id, r.code, date_trunc('hour', r.ts), count(*),
           coalesce(sum(r.measure), 0), max(r.measure), max(r.ts),
           (array_agg(r.measure ORDER BY r.ts DESC, r.measure DESC NULLS LAST))[1]
    FROM incoming r JOIN inserted USING (event_id)
    WHERE r.counted
    GROUP BY r.subscription_id, r.namespace_id, r.code, date_trunc('hour', r.ts)
    ORDER BY 2, 3, 4, 5
    ON CONFLICT (tenant_id, subscription_id, code, hour, namespace_id) DO UPDATE SET
        event_count = t.event_count + excluded.event_count,
        value_sum = t.value_sum + excluded.value_sum,
        value_max = greatest(t.value_max, excluded.value_max),
        latest_value = CASE
            WHEN t.latest_at IS NULL OR excluded.latest_at > t.latest_at
                 OR (excluded.latest_at = t.latest_at AND excluded.latest_value > t.latest_value)
            THEN excluded.latest_value ELSE t.latest_value END,
        latest_at = greatest(t.latest_at, excluded.latest_at)
)
SELECT event_id FROM inserted
"""


def _optional_text(value) -> str | None:
    return None if value is None else str(value)


def _insert_postgresql(tenant, rows: list[EventRow], now: dt.datetime) -> set[str]:
    document = json.dumps(
        [
            {
                "id": r.id,
                "event_id": r.event_id,
                "code": r.code,
                "customer_id": str(r.customer_id),
                "namespace_id": str(r.namespace_id),
                "subscription_id": _optional_text(r.subscription_id),
                "value": _optional_text(r.value),
                "properties": r.properties,
                "ts": r.timestamp.isoformat(),
                "measure": _optional_text(r.measure),
                "counted": r.counted,
                "usage_reference": r.usage_reference,
                "usage_start": r.usage_start.isoformat() if r.usage_start else None,
                "usage_end": r.usage_end.isoformat() if r.usage_end else None,
                "description": r.description,
            }
            for r in rows
        ]
    )
    # Server-side binding: the document travels as a parameter, not inlined in the SQL.
    with prepared_cursor() as cursor:
        cursor.execute(_PG_INSERT, [document, tenant.pk, now, tenant.pk])
        return {row[0] for row in cursor.fetchall()}


def _rollup_groups(rows: list[EventRow]) -> dict[tuple, Aggregate]:
    """Python twin of the SQL rollup aggregate: {(subscription, namespace, code, hour): agg}."""
    groups: dict[tuple, Aggregate] = {}
    for r in rows:
        if r.counted:
            key = (r.subscription_id, r.namespace_id, r.code, _hour(r.timestamp))
            groups.setdefault(key, Aggregate()).add(1, r.measure, r.measure, r.timestamp, r.measure)
    return groups


def _rollups_add_orm(tenant, groups: dict[tuple, Aggregate]) -> None:
    for (subscription_id, namespace_id, code, hour), group in sorted(
        groups.items(), key=lambda item: (str(item[0][0]), str(item[0][1]), item[0][2], item[0][3])
    ):
        rollup, _ = UsageRollup.objects.get_or_create(
            tenant=tenant,
            subscription_id=subscription_id,
            namespace_id=namespace_id,
            code=code,
            hour=hour,
        )
        merged = Aggregate(
            rollup.event_count,
            rollup.value_sum,
            rollup.value_max,
            rollup.latest_at,
            rollup.latest_value,
        )
        merged.add(group.count, group.total, group.maximum, group.latest_at, group.latest_value)
        rollup.event_count, rollup.value_sum, rollup.value_max = (
            merged.count,
            merged.total,
            merged.maximum,
        )
        rollup.latest_at, rollup.latest_value = merged.latest_at, merged.latest_value
        rollup.save()


def _insert_orm(tenant, rows: list[EventRow], now: dt.datetime) -> set[str]:
    """SQLite: writers are serialized (IMMEDIATE transactions), so "not there yet" read inside
    the transaction is exact; bulk_create(ignore_conflicts) stays as the belt to the braces."""
    existing = set(
        UsageEvent.objects.for_tenant(tenant)
        .filter(event_id__in=[r.event_id for r in rows])
        .values_list("event_id", flat=True)
    )
    new = [r for r in rows if r.event_id not in existing]
    UsageEvent.objects.bulk_create(
        [
            UsageEvent(
                id=r.id,
                tenant=tenant,
                created_at=now,
                event_id=r.event_id,
                code=r.code,
                customer_id=r.customer_id,
                namespace_id=r.namespace_id,
                subscription_id=r.subscription_id,
                value=r.value,
                properties=r.properties,
                timestamp=r.timestamp,
                usage_reference=r.usage_reference,
                usage_start=r.usage_start,
                usage_end=r.usage_end,
                description=r.description,
            )
            for r in new
        ],
        ignore_conflicts=True,
        batch_size=500,
    )
    _rollups_add_orm(tenant, _rollup_groups(new))
    return {r.event_id for r in new}


def _store(tenant, rows: list[EventRow], namespace_rows: dict, now: dt.datetime) -> list[EventRow]:
    """Insert the rows that are new (inside the caller's transaction); returns them."""
    if not rows:
        return []
    # A guard with `prepare` reads what it can before the insert (limits, rate tokens) and
    # returns the check that runs after it.
    checks = [
        guard.prepare(tenant, namespace_rows, rows)
        if hasattr(guard, "prepare")
        else functools.partial(guard, tenant, namespace_rows)
        for guard in INGESTION_GUARDS
    ]
    if _is_postgresql():
        inserted_ids = _insert_postgresql(tenant, rows, now)
    else:
        inserted_ids = _insert_orm(tenant, rows, now)
    inserted = [r for r in rows if r.event_id in inserted_ids]
    for row in inserted:
        row.created_at = now
    for check in checks:
        check(inserted)
    return inserted


@contextmanager
def _ingestion_transaction():
    """The ingestion transaction. A guard's refusal may carry `after_rollback` (quotas: the
    `quota.exceeded` announcement), which must run after the refused writes are rolled back."""
    try:
        with transaction.atomic():
            yield
    except Exception as refusal:
        after_rollback = getattr(refusal, "after_rollback", None)
        if after_rollback is not None:
            after_rollback()
        raise


def events_ingest(*, tenant, events: list, batch: bool) -> IngestResult:
    """Validate and store events (all or nothing). Duplicates by event_id, within the request or
    against stored events, are no-ops and counted as such. A single event (not `batch`) whose
    event_id is stored already is a duplicate before anything else is checked: a client's retry
    is answered with what was stored, even once its body would no longer be accepted."""
    now = timezone.now()
    errors = _Errors(batch)
    drafts = []
    for index, raw in enumerate(events):
        draft = _parse_event(raw, index, errors, now)
        if draft is not None:
            drafts.append(draft)
    single_id = None
    if not batch and isinstance(events[0], dict):
        event_id = events[0].get("event_id")
        if isinstance(event_id, str) and event_id:
            single_id = event_id
    if errors.by_key and single_id and event_exists(tenant=tenant, event_id=single_id):
        return IngestResult(accepted=0, duplicates=1)
    errors.raise_if_any()
    seen: set[str] = set()
    unique = []
    for draft in drafts:
        if draft.event_id not in seen:
            seen.add(draft.event_id)
            unique.append(draft)
    with _ingestion_transaction():
        rows, namespace_rows, limited, stored = _resolve(
            tenant, unique, errors, stored_check=[single_id] if single_id else ()
        )
        if single_id in stored:
            return IngestResult(accepted=0, duplicates=1)
        errors.raise_if_any()
        inserted = _store(tenant, rows, namespace_rows, now)
        _usage_limits_nudge({r.customer_id for r in inserted} & limited)
    return IngestResult(
        accepted=len(inserted), duplicates=len(events) - len(inserted), inserted=inserted, rows=rows
    )


def event_exists(*, tenant, event_id: str) -> bool:
    """Whether the tenant already stored `event_id` (one index probe, no ORM compile)."""
    tenant_key = tenant.pk if _is_postgresql() else tenant.pk.hex
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM usage_usageevent WHERE tenant_id = %s AND event_id = %s LIMIT 1",
            [tenant_key, event_id],
        )
        return cursor.fetchone() is not None


# --- Seed-004 usages -----------------------------------------------------------------------------


def _usage_references_take(tenant, count: int) -> list[int]:
    UsageReferenceSequence.objects.get_or_create(tenant=tenant)
    sequence = UsageReferenceSequence.objects.select_for_update().get(tenant=tenant)
    first = sequence.last_value + 1
    sequence.last_value += count
    sequence.save(update_fields=["last_value"])
    return list(range(first, first + count))


def _check_subscription_billing(subscription: Subscription) -> None:
    if subscription.status not in BILLING_STATUSES:
        raise ValidationError(
            {"subscription": [f"subscription is not billing (it is {subscription.status})"]}
        )
    if subscription.customer.status != Customer.Status.ACTIVE:
        raise ValidationError({"customer": ["customer is disabled"]})


def usages_create(*, subscription: Subscription, usages: list[dict]) -> list[UsageEvent]:
    """Store seed-004 usages: each counts exactly like an event of `units` for `option_code` at
    `usage_start` (a usage of a closed period that arrives late goes on the next invoice)."""
    tenant = subscription.tenant
    now = timezone.now()
    with _ingestion_transaction():
        _subscriptions_locked(tenant, {subscription.pk})
        _check_subscription_billing(subscription)
        metrics = _metric_rules(tenant, {u["option_code"] for u in usages}, lock=True)
        unknown = [
            f"{i}.option_code" for i, u in enumerate(usages) if u["option_code"] not in metrics
        ]
        if unknown:
            raise ValidationError(
                {key: [f"option_code is not a known metric code ({key})"] for key in unknown}
            )
        references = _usage_references_take(tenant, len(usages))
        ids = _uuid7_texts(len(usages))
        rows = []
        for usage, reference, event_row_id in zip(usages, references, ids, strict=True):
            metric = metrics[usage["option_code"]]
            value = Decimal(usage["units"])
            rows.append(
                EventRow(
                    id=event_row_id,
                    event_id=f"usage-{reference}",
                    code=metric.code,
                    customer_id=subscription.customer_id,
                    namespace_id=subscription.customer.default_namespace_id,
                    subscription_id=subscription.pk,
                    value=value,
                    properties={},
                    timestamp=usage["usage_start"],
                    measure=value,
                    counted=metric.matches({}),
                    usage_reference=reference,
                    usage_start=usage["usage_start"],
                    usage_end=usage["usage_end"],
                    description=usage.get("description") or "",
                )
            )
        _store(tenant, rows, {}, now)
        if UsageLimit.objects.filter(customer_id=subscription.customer_id).exists():
            _usage_limits_nudge({subscription.customer_id})
    return list(
        UsageEvent.objects.for_tenant(tenant)
        .filter(usage_reference__in=references)
        .order_by("usage_reference")
    )


def _refuse_billed(usages) -> None:
    billed = [u.usage_reference for u in usages if u.renewal_order_reference]
    if billed:
        raise Conflict(f"Billed usage cannot be changed (usage_reference {billed[0]}).")


def usage_update(*, usage: UsageEvent, units: int | None = None, description=None) -> UsageEvent:
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(pk=usage.subscription_id)
        usage = UsageEvent.objects.select_for_update().get(pk=usage.pk)
        _refuse_billed([usage])
        fields = []
        if units is not None:
            usage.value = Decimal(units)
            fields.append("value")
        if description is not None:
            usage.description = description
            fields.append("description")
        if fields:
            usage.save(update_fields=fields)
        if units is not None:
            rollups_rebuild(
                tenant=subscription.tenant,
                codes={usage.code},
                subscription_ids={subscription.pk},
                hours={_hour(usage.timestamp)},
            )
    return usage


def usages_delete(*, subscription: Subscription, queryset) -> int:
    with transaction.atomic():
        Subscription.objects.select_for_update().get(pk=subscription.pk)
        usages = list(queryset.select_for_update())
        _refuse_billed(usages)
        if not usages:
            return 0
        UsageEvent.objects.filter(pk__in=[u.pk for u in usages]).delete()
        rollups_rebuild(
            tenant=subscription.tenant,
            codes={u.code for u in usages},
            subscription_ids={subscription.pk},
            hours={_hour(u.timestamp) for u in usages},
        )
    return len(usages)


# --- Rollups ------------------------------------------------------------------------------------


def _hour(at: dt.datetime) -> dt.datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def rollups_rebuild(*, tenant, codes: set[str], subscription_ids=None, hours=None) -> int:
    """Recompute rollups from the events (after a usage is changed or deleted, or a metric's
    filters or aggregation property change). Callers hold the lock that keeps ingestion out:
    the subscription FOR UPDATE, or the metric FOR UPDATE."""
    metrics = _metric_rules(tenant, set(codes), lock=False)
    stale = UsageRollup.objects.filter(tenant=tenant, code__in=codes)
    events = UsageEvent.objects.for_tenant(tenant).filter(code__in=codes)
    if subscription_ids is not None:
        stale = stale.filter(subscription_id__in=subscription_ids)
        events = events.filter(subscription_id__in=subscription_ids)
    if hours is not None:
        hour_filter = Q()
        for hour in hours:
            hour_filter |= Q(timestamp__gte=hour, timestamp__lt=hour + dt.timedelta(hours=1))
        stale = stale.filter(hour__in=hours)
        events = events.filter(hour_filter)
    stale.delete()
    rows = []
    for code, subscription_id, namespace_id, value, properties, timestamp in events.values_list(
        "code", "subscription_id", "namespace_id", "value", "properties", "timestamp"
    ).iterator(chunk_size=5000):
        metric = metrics.get(code)
        if metric is None:
            continue
        rows.append(
            EventRow(
                id=None,
                event_id="",
                code=code,
                customer_id=None,
                namespace_id=namespace_id,
                subscription_id=subscription_id,
                value=value,
                properties=properties or {},
                timestamp=timestamp,
                measure=metric.measure(value, properties or {}),
                counted=metric.matches(properties or {}),
            )
        )
    groups = _rollup_groups(rows)
    UsageRollup.objects.bulk_create(
        [
            UsageRollup(
                tenant=tenant,
                subscription_id=sub,
                namespace_id=ns,
                code=code,
                hour=hour,
                event_count=group.count,
                value_sum=group.total,
                value_max=group.maximum,
                latest_at=group.latest_at,
                latest_value=group.latest_value,
            )
            for (sub, ns, code, hour), group in groups.items()
        ],
        batch_size=1000,
    )
    return len(groups)


def metric_rollups_refresh(*, metric: Metric) -> None:
    """After a metric's filters or aggregation property changed: rebuild its rollups, holding
    the metric FOR UPDATE so that ingestion (which holds it FOR KEY SHARE) waits."""
    with transaction.atomic():
        Metric.objects.select_for_update().get(pk=metric.pk)
        rollups_rebuild(tenant=metric.tenant, codes={metric.code})


# --- Billing ------------------------------------------------------------------------------------


def usage_mark_billed(
    *,
    invoice_numbers_by_sub: dict,
    periods: dict,
    post_invoice_numbers_by_sub: dict | None = None,
) -> int:
    """Fill `renewal_order_reference` of every unbilled event of each subscription with
    `timestamp < period end` (the set the invoice's usage lines were computed from). Call inside
    the renewal transaction that holds the subscriptions FOR UPDATE. Events of the metrics of
    `post_invoice` items get the number of the subscription's post_invoice invoice when one is
    given (a subscription may have only that one: its other events are then left alone); without
    one (no post_invoice usage) they get the renewal invoice's number like the rest."""
    marked = 0
    post_invoice_numbers_by_sub = {
        subscription_id: number
        for subscription_id, number in (post_invoice_numbers_by_sub or {}).items()
        if number
    }
    subscription_ids = list(dict.fromkeys([*invoice_numbers_by_sub, *post_invoice_numbers_by_sub]))
    if not subscription_ids:
        return marked
    post_codes = post_invoice_codes(set(post_invoice_numbers_by_sub))
    # One query finds the subscriptions that have anything to mark (most of a renewal batch has
    # none); only those take their own UPDATE.
    latest_end = max(periods[subscription_id][1] for subscription_id in subscription_ids)
    with_unbilled = set(
        UsageEvent.objects.filter(
            subscription_id__in=subscription_ids,
            renewal_order_reference__isnull=True,
            timestamp__lt=latest_end,
        )
        .values_list("subscription_id", flat=True)
        .distinct()
    )
    for subscription_id in subscription_ids:
        if subscription_id not in with_unbilled:
            continue
        _, end = periods[subscription_id]
        unbilled = UsageEvent.objects.filter(
            subscription_id=subscription_id,
            renewal_order_reference__isnull=True,
            timestamp__lt=end,
        )
        codes = post_codes.get(subscription_id)
        if codes and subscription_id in post_invoice_numbers_by_sub:
            marked += unbilled.filter(code__in=codes).update(
                renewal_order_reference=post_invoice_numbers_by_sub[subscription_id]
            )
        number = invoice_numbers_by_sub.get(subscription_id)
        if number:
            marked += unbilled.update(renewal_order_reference=number)
    return marked


def post_invoice_codes(subscription_ids: set) -> dict:
    codes: dict = {}
    if not subscription_ids:
        return codes
    for subscription_id, code in SubscriptionItem.objects.filter(
        subscription_id__in=subscription_ids,
        calc_rule_type=SubscriptionItem.CalcRuleType.POST_INVOICE,
        metric__isnull=False,
    ).values_list("subscription_id", "metric__code"):
        codes.setdefault(subscription_id, set()).add(code)
    return codes


# --- Usage limits -------------------------------------------------------------------------------


def _usage_limits_nudge(limited_customer_ids: set) -> None:
    """After an ingestion burst: evaluate soon (at most every 30 s each) the limits of these
    customers, which have some. No query: the debounce lives in the cache."""
    due = [
        str(customer_id)
        for customer_id in limited_customer_ids
        if cache.add(f"usage-limits:{customer_id}", 1, LIMIT_EVALUATION_DEBOUNCE_SECONDS)
    ]
    if not due:
        return
    from usage.tasks import evaluate_customer_usage_limits

    transaction.on_commit(lambda: evaluate_customer_usage_limits.delay(due))


def usage_limit_create(*, customer: Customer, amount: int, action: str) -> UsageLimit:
    limit = UsageLimit.objects.create(
        tenant=customer.tenant, customer=customer, amount=amount, action=action
    )
    usage_limits_evaluate(customer_ids=[customer.pk])
    return limit


def usage_limit_delete(*, usage_limit: UsageLimit) -> None:
    usage_limit.delete()


def usage_limits_evaluate(*, customer_ids=None, at: dt.datetime | None = None) -> int:
    """Compare each customer's current-period usage cost with its limits. WARNING fires once per
    period (`usage_limit.warning`); DISABLE disables the customer (`usage_limit.disabled`), after
    which its events are refused. Returns how many limits fired."""
    from customers.services import customer_disable
    from usage.selectors import customer_cost_estimate

    at = at or timezone.now()
    limits = UsageLimit.objects.select_related("customer", "customer__tenant").order_by(
        "customer_id", "amount"
    )
    if customer_ids is not None:
        limits = limits.filter(customer_id__in=customer_ids)
    by_customer: dict = {}
    for limit in limits:
        by_customer.setdefault(limit.customer_id, []).append(limit)
    fired = 0
    for customer_limits in by_customer.values():
        customer = customer_limits[0].customer
        estimate = customer_cost_estimate(customer=customer, at=at)
        if estimate.period_start is None:
            continue
        for limit in customer_limits:
            if (
                estimate.total < limit.amount
                or limit.triggered_period_start == estimate.period_start
            ):
                continue
            with transaction.atomic():
                locked = UsageLimit.objects.select_for_update().filter(pk=limit.pk).first()
                if locked is None or locked.triggered_period_start == estimate.period_start:
                    continue
                locked.triggered_period_start, locked.triggered_at = estimate.period_start, at
                locked.save(update_fields=["triggered_period_start", "triggered_at"])
                data = {
                    "id": locked.pk,
                    "customer": customer.pk,
                    "amount": locked.amount,
                    "action": locked.action,
                    "cost": {"amount": estimate.total, "currency": estimate.currency},
                    "period_start": estimate.period_start,
                }
                if locked.action == UsageLimit.Action.DISABLE:
                    customer_disable(customer=customer)
                    emit(tenant=customer.tenant, event_type="usage_limit.disabled", data=data)
                else:
                    emit(tenant=customer.tenant, event_type="usage_limit.warning", data=data)
                fired += 1
    return fired
