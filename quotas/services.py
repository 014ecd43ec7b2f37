"""Writes for namespaces' billing: quotas (optimistic concurrency), their enforcement at ingestion
(a usage ingestion guard), plan transitions (run by a worker, optionally after staff approval),
namespace payment methods with roles (charging falls back from the primary card to the secondary
in invoicing.services), and add-ons.

Enforcement is race-free: inside the ingestion transaction, before the insert, the guard takes
one transaction-scoped lock per (namespace, metric) that a hard limit binds
(`pg_advisory_xact_lock`, in key order, always before any rollup row lock, so batches cannot
deadlock); after the insert it reads the period's total. Whoever takes the lock second reads, in
a fresh READ COMMITTED snapshot, everything the first committed, so concurrent clients can never
take a namespace past its maximum. SQLite serialises writers itself (IMMEDIATE transactions)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
from collections import Counter, defaultdict

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.exceptions import APIException, ValidationError

from billing_project.db import prepared_cursor
from customers.models import Namespace
from invoicing import services as invoicing_services
from invoicing.gateways.base import CardError
from invoicing.models import PaymentMethod
from quotas import selectors
from quotas.models import PlanTransition, Quota, QuotaExceedance
from quotas.ratelimit import Take, buckets_take
from subscriptions import selectors as subscription_selectors
from subscriptions import services as subscription_services
from subscriptions.models import Metric, Subscription, SubscriptionItem, SubscriptionPlan
from tenants.api.errors import Conflict, QuotaExceeded, flatten_validation_errors
from tenants.api.fields import decimal_text
from webhooks.services import emit

logger = logging.getLogger(__name__)

State = PlanTransition.State
UNIQUE_COUNT = Metric.AggregationMethod.UNIQUE_COUNT
Role = PaymentMethod.Role
# A transition claimed by a worker that died is taken over after this long.
PLAN_TRANSITION_CLAIM_TIMEOUT = dt.timedelta(minutes=10)


# --- Quotas --------------------------------------------------------------------------------------


def _format_version(quota: Quota) -> str:
    return str(quota.resource_version)


@transaction.atomic
def quota_create(
    *, namespace: Namespace, name: str, spec: dict, description="", labels=None, disable=False
) -> Quota:
    try:
        with transaction.atomic():
            return Quota.objects.create(
                tenant_id=namespace.tenant_id,
                namespace=namespace,
                name=name,
                description=description,
                labels=labels or {},
                disable=disable,
                spec=spec,
            )
    except IntegrityError:
        raise Conflict(
            f"A quota named {name} already exists in namespace {namespace.name}."
        ) from None


@transaction.atomic
def quota_replace(
    *,
    quota: Quota,
    spec: dict,
    description="",
    labels=None,
    disable=False,
    resource_version: int | None = None,
) -> Quota:
    """Replace the quota's description, labels, disable flag and spec. With `resource_version`
    only that version is replaced (409 otherwise): a client that read an older one must re-read."""
    rows = Quota.objects.filter(pk=quota.pk)
    if resource_version is not None:
        rows = rows.filter(resource_version=resource_version)
    updated = rows.update(
        description=description,
        labels=labels or {},
        disable=disable,
        spec=spec,
        resource_version=F("resource_version") + 1,
        updated_at=timezone.now(),
    )
    if not updated:
        quota.refresh_from_db(fields=["resource_version"])
        raise Conflict(
            f"The quota was changed meanwhile: resource_version {resource_version} is stale "
            f"(the current one is {_format_version(quota)})."
        )
    quota.refresh_from_db()
    return quota


def quota_delete(*, quota: Quota) -> None:
    quota.delete()


# --- Enforcement at ingestion --------------------------------------------------------------------


class NamespaceQuotaExceeded(QuotaExceeded):
    """429 `Quota Exceeded`. `after_rollback` runs once the refused request's transaction has
    rolled back (usage.services calls it): it announces the refusal (`quota.exceeded`)."""

    def __init__(self, detail, *, exceedance: dict, wait: float | None = None):
        super().__init__(detail)
        self.exceedance = exceedance
        self.wait = wait

    def after_rollback(self) -> None:
        quota_exceedance_record(**self.exceedance)


def _lock_key(tenant_id, namespace_id, code: str) -> int:
    digest = hashlib.blake2b(f"{tenant_id}:{namespace_id}:{code}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _lock_namespace_metrics(tenant_id, pairs) -> None:
    """Serialise writers per (namespace, metric) until commit (see the module docstring)."""
    if connection.vendor != "postgresql" or not pairs:
        return
    keys = sorted({_lock_key(tenant_id, namespace_id, code) for namespace_id, code in pairs})
    with prepared_cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, n) "
            "ORDER BY n",
            [keys],
        )


def _refuse(
    tenant, namespace_name, namespace_id, code, kind, limits, *, maximum, attempted, wait=None
):
    if kind == "api_limits":
        message = f"namespace {namespace_name} sends {code} events faster than its api limit allows"
    else:
        message = (
            f"namespace {namespace_name} would exceed its {kind} quota for {code}: "
            f"{decimal_text(attempted)} > maximum {maximum}"
        )
    raise NamespaceQuotaExceeded(
        message,
        wait=wait,
        exceedance={
            "tenant": tenant,
            "namespace_id": namespace_id,
            "code": code,
            "kind": kind,
            "period_start": limits.period_start,
            "maximum": maximum,
            "attempted": attempted,
        },
    )


def ingestion_guard(tenant, namespace_rows: dict, events: list) -> None:
    """usage.services.INGESTION_GUARDS entry: refuse (429) a batch that would take a namespace
    past a hard limit or over its api rate. Called after insert, inside the ingestion
    transaction; usage.services calls `ingestion_guard.prepare` before the insert when it can,
    which keeps the reads, the token buckets and the locks out of the insert's row-lock window."""
    ingestion_guard_prepare(tenant, namespace_rows, events)(events)


def ingestion_guard_prepare(tenant, namespace_rows: dict, rows: list):
    """Before insert: read the effective limits, take the api-limit tokens of every row and the
    (namespace, metric) locks that hard limits need. Returns the check of the inserted rows."""
    if not rows:
        return _nothing_to_check
    namespaces, names = {}, {}
    for namespace_id in {row.namespace_id for row in rows}:
        known = namespace_rows.get(namespace_id)
        if known is not None:
            namespaces[namespace_id], names[namespace_id] = known.customer_id, known.name
    missing = {row.namespace_id for row in rows} - set(namespaces)
    if missing:
        for pk, name, customer_id in Namespace.objects.filter(pk__in=missing).values_list(
            "id", "name", "customer_id"
        ):
            namespaces[pk], names[pk] = customer_id, name
    codes = {row.code for row in rows}
    sources = selectors.limit_sources(tenant, namespaces, codes)
    if not sources.quota_specs and not sources.plan_limits:
        return _nothing_to_check
    limits = selectors.limits_for_namespaces(tenant, namespaces, codes=codes, sources=sources)
    guard = _Guard(tenant, names, namespaces, limits, sources)
    guard.take_api_tokens(rows)
    return guard.check


def _nothing_to_check(inserted: list) -> None:
    return None


ingestion_guard.prepare = ingestion_guard_prepare


class _Guard:
    """One request's quota check: prepared before the insert, run on the rows inserted."""

    def __init__(self, tenant, names, namespaces, limits, sources):
        self.tenant, self.names, self.namespaces = tenant, names, namespaces
        self.limits, self.sources = limits, sources

    def take_api_tokens(self, rows) -> None:
        sent = Counter((row.namespace_id, row.code) for row in rows)
        takes, pairs = [], []
        for (namespace_id, code), count in sorted(
            sent.items(), key=lambda item: (str(item[0][0]), item[0][1])
        ):
            api_limit = self.limits[namespace_id].api_limits.get(code)
            if not api_limit:
                continue
            unit_seconds = selectors.API_LIMIT_UNITS[api_limit.get("unit", "per-second")]
            rate = int(api_limit["rate"])
            takes.append(
                Take(
                    f"quota:api:{self.tenant.pk}:{namespace_id}:{code}",
                    rate_per_second=rate / unit_seconds,
                    burst=int(api_limit.get("burst") or rate),
                    tokens=count,
                )
            )
            pairs.append((namespace_id, code, rate, count))
        answer = buckets_take(takes)
        if not answer.taken:
            namespace_id, code, rate, count = pairs[takes.index(answer.refused)]
            self.refuse(
                namespace_id,
                code,
                "api_limits",
                maximum=rate,
                attempted=count,
                wait=answer.wait_seconds,
            )

    def binding(self, rows) -> dict:
        """{(namespace id, code): {(kind, maximum)}} of the hard limits the rows count in."""
        found: dict = defaultdict(set)
        seen = set()
        for row in rows:
            key = (row.namespace_id, row.code, row.counted, row.timestamp)
            if key in seen or not row.counted:
                continue
            seen.add(key)
            limits = self.limits[row.namespace_id]
            if not (limits.period_start <= row.timestamp < limits.period_end):
                continue
            for kind in selectors.HARD_KINDS:
                maximum = limits.maximums.get((kind, row.code))
                if maximum is not None and maximum != selectors.UNLIMITED:
                    found[(row.namespace_id, row.code)].add((kind, maximum))
        return found

    def _periods(self, binding) -> dict:
        by_period: dict = defaultdict(set)
        for namespace_id, code in binding:
            limits = self.limits[namespace_id]
            by_period[(limits.period_start, limits.period_end)].add((namespace_id, code))
        return by_period

    def check(self, inserted: list) -> None:
        """After the insert, lock the bound (namespace, metric) pairs and read their period usage,
        which now includes this request's rows. Every writer of a pair takes its lock after its
        own insert and holds it until commit, so the reading is the committed usage plus ours;
        the lock is held only for this check and the commit, not for the insert."""
        binding = self.binding(inserted)
        if not binding:
            return
        methods = self.sources.methods
        _lock_namespace_metrics(self.tenant.pk, binding)
        after = {}
        for (start, end), pairs in self._periods(binding).items():
            after.update(selectors.period_aggregates(self.tenant.pk, pairs, start, end, methods))
        unique = [pair for pair in binding if methods.get(pair[1]) == UNIQUE_COUNT]
        for pair in sorted(binding, key=str):
            if pair in unique:
                limits = self.limits[pair[0]]
                usage = selectors.period_totals(
                    self.tenant.pk, {pair}, limits.period_start, limits.period_end, methods
                )[pair]
            else:
                usage = after[pair].quantity(methods.get(pair[1]) or Metric.AggregationMethod.SUM)
            for kind, maximum in sorted(binding[pair]):
                if usage > maximum:
                    self.refuse(*pair, kind, maximum=maximum, attempted=usage)

    def refuse(self, namespace_id, code, kind, *, maximum, attempted, wait=None):
        _refuse(
            self.tenant,
            self.names[namespace_id],
            namespace_id,
            code,
            kind,
            self.limits[namespace_id],
            maximum=maximum,
            attempted=attempted,
            wait=wait,
        )


def quota_exceedance_record(
    *, tenant, namespace_id, code, kind, period_start, maximum, attempted
) -> bool:
    """Announce a refusal with `quota.exceeded`, once per namespace, metric, kind and period.
    Called after the refused request rolled back; returns whether it was announced now."""
    try:
        with transaction.atomic():
            _, created = QuotaExceedance.objects.get_or_create(
                tenant=tenant,
                namespace_id=namespace_id,
                code=code,
                kind=kind,
                period_start=period_start,
                defaults={"maximum": maximum, "attempted": attempted},
            )
            if created:
                namespace = Namespace.objects.get(pk=namespace_id)
                emit(
                    tenant=tenant,
                    event_type="quota.exceeded",
                    data={
                        "namespace": namespace.name,
                        "customer": str(namespace.customer_id),
                        "metric": code,
                        "kind": kind,
                        "maximum": maximum,
                        "attempted": decimal_text(attempted),
                        "period_start": period_start,
                    },
                )
            return created
    except IntegrityError:
        return False


# --- Namespace payment methods -------------------------------------------------------------------


def _namespace_methods(namespace: Namespace):
    return PaymentMethod.objects.filter(
        tenant_id=namespace.tenant_id, namespace=namespace, deleted_at__isnull=True
    )


def _lock_namespace(namespace: Namespace) -> None:
    Namespace.objects.select_for_update().filter(pk=namespace.pk).first()


def _make_default(method: PaymentMethod) -> None:
    PaymentMethod.objects.filter(
        tenant_id=method.tenant_id, customer_id=method.customer_id, default=True
    ).exclude(pk=method.pk).update(default=False)
    method.default = True


def _set_role(method: PaymentMethod, role: str) -> None:
    """Give `method` its role in its namespace: one PRIMARY and one SECONDARY at most, the one
    displaced becomes NORMAL. The primary card is also the customer's default card, so every
    charge (renewals, changes) tries it first."""
    if role in (Role.PRIMARY, Role.SECONDARY):
        _namespace_methods(method.namespace).filter(role=role).exclude(pk=method.pk).update(
            role=Role.NORMAL
        )
    if role == Role.PRIMARY:
        _make_default(method)
    method.role = role
    method.save(update_fields=["role", "default"])


def namespace_payment_method_create(
    *, namespace: Namespace, role: str, token: str, contact: dict | None = None
) -> PaymentMethod:
    customer = namespace.customer
    try:
        method = invoicing_services.payment_method_from_card_token(
            customer=customer,
            card_token=token,
            make_default=False,
            role=Role.NORMAL,
            namespace=namespace,
        )
    except CardError as error:
        raise ValidationError({"token": [f"token was refused: {error.failure_reason}"]}) from None
    with transaction.atomic():
        _lock_namespace(namespace)
        method.name = f"pm-{method.pk.hex[-12:]}"
        method.contact = contact or {}
        method.save(update_fields=["name", "contact"])
        has_default = (
            PaymentMethod.objects.filter(
                tenant_id=customer.tenant_id,
                customer=customer,
                default=True,
                deleted_at__isnull=True,
            )
            .exclude(pk=method.pk)
            .exists()
        )
        if not has_default:
            _make_default(method)
        _set_role(method, role)
    return method


def namespace_payment_method_get(*, namespace: Namespace, name: str) -> PaymentMethod:
    method = _namespace_methods(namespace).filter(name=name).select_related("namespace").first()
    if method is None:
        raise ObjectDoesNotExist(f"payment method {name} was not found")
    return method


@transaction.atomic
def namespace_payment_method_make_primary(*, method: PaymentMethod) -> PaymentMethod:
    _lock_namespace(method.namespace)
    _set_role(method, Role.PRIMARY)
    return method


@transaction.atomic
def namespace_payment_method_make_secondary(*, method: PaymentMethod) -> PaymentMethod:
    _lock_namespace(method.namespace)
    method.refresh_from_db()
    if method.role == Role.PRIMARY:
        raise Conflict(
            "The primary payment method cannot be made secondary; use swap-primary on the "
            "secondary one, or make another one primary first."
        )
    _set_role(method, Role.SECONDARY)
    return method


@transaction.atomic
def namespace_payment_method_swap_primary(*, method: PaymentMethod) -> PaymentMethod:
    """The secondary becomes primary and the primary secondary."""
    _lock_namespace(method.namespace)
    method.refresh_from_db()
    if method.role != Role.SECONDARY:
        raise Conflict("Only the secondary payment method can be swapped with the primary one.")
    primary = _namespace_methods(method.namespace).filter(role=Role.PRIMARY).first()
    if primary is not None:
        primary.role = Role.SECONDARY
        primary.save(update_fields=["role"])
    _set_role(method, Role.PRIMARY)
    return method


@transaction.atomic
def namespace_payment_method_delete(*, method: PaymentMethod) -> None:
    """Delete a namespace's card; when it was the primary, the secondary takes its place."""
    _lock_namespace(method.namespace)
    method.refresh_from_db()
    was_primary = method.role == Role.PRIMARY
    invoicing_services.payment_method_delete(payment_method=method)
    if was_primary:
        secondary = _namespace_methods(method.namespace).filter(role=Role.SECONDARY).first()
        if secondary is not None:
            _set_role(secondary, Role.PRIMARY)


# --- Add-ons -------------------------------------------------------------------------------------


def addon_plan_get(*, tenant, code_name: str) -> SubscriptionPlan:
    plan = (
        SubscriptionPlan.objects.for_tenant(tenant)
        .filter(code_name=code_name, is_addon=True)
        .first()
    )
    if plan is None:
        raise ValidationError({"addon": [f"addon {code_name!r} is not an add-on plan"]})
    return plan


def _active_addon_items(subscription: Subscription, addon: SubscriptionPlan):
    now = timezone.now()
    return (
        SubscriptionItem.objects.for_tenant(subscription.tenant)
        .filter(
            subscription=subscription,
            item_type=SubscriptionItem.ItemType.ADDON,
            price__in=addon.prices.all(),
        )
        .exclude(active_to__isnull=False, active_to__lte=now)
    )


def _current_subscription(namespace: Namespace) -> Subscription:
    subscription = selectors.namespace_subscription(namespace)
    if subscription is None:
        raise Conflict(f"The customer of namespace {namespace.name} has no current subscription.")
    return subscription


def addon_subscribe(*, namespace: Namespace, addon: SubscriptionPlan) -> Subscription:
    """Add the add-on plan's fee to the customer's subscription (prorated for the rest of the
    period); returns the subscription. Subscribing twice is a no-op."""
    subscription = _current_subscription(namespace)
    if _active_addon_items(subscription, addon).exists():
        return subscription
    price = subscription_selectors.plan_default_price(
        plan=addon, currency=subscription.currency, schedule=subscription.schedule
    )
    if price is None:
        raise ValidationError(
            {
                "addon": [
                    f"addon {addon.code_name} has no price in {subscription.currency} per "
                    f"{subscription.schedule}"
                ]
            }
        )
    subscription_services.subscription_item_add(
        subscription=subscription, item_type=SubscriptionItem.ItemType.ADDON, price=price
    )
    return subscription


def addon_unsubscribe(*, namespace: Namespace, addon: SubscriptionPlan) -> Subscription:
    """End the add-on's items (their unused time is credited); returns the subscription."""
    subscription = _current_subscription(namespace)
    for item in _active_addon_items(subscription, addon):
        subscription_services.subscription_item_remove(item=item)
    return subscription


# --- Plan transitions ----------------------------------------------------------------------------


def plan_get(*, tenant, reference: str) -> SubscriptionPlan | None:
    plans = SubscriptionPlan.objects.for_tenant(tenant)
    try:
        return plans.filter(pk=uuid.UUID(str(reference))).first()
    except ValueError:
        return plans.filter(code_name=reference).first()


def _enqueue(transition: PlanTransition) -> None:
    from quotas import tasks

    transaction.on_commit(lambda: tasks.plan_transition_execute.delay(str(transition.pk)))


@transaction.atomic
def plan_transition_create(
    *, namespace: Namespace, new_plan: SubscriptionPlan, payload: dict
) -> PlanTransition:
    if new_plan.is_addon:
        raise ValidationError({"new_plan": ["new_plan must not be an add-on plan"]})
    for field in ("subscribe_addon_services", "unsubscribe_addon_services"):
        for code_name in payload.get(field) or []:
            try:
                addon_plan_get(tenant=namespace.tenant, code_name=code_name)
            except ValidationError:
                raise ValidationError(
                    {f"payload.{field}": [f"{code_name!r} is not an add-on plan"]}
                ) from None
    subscription = selectors.namespace_subscription(namespace)
    transition = PlanTransition.objects.create(
        tenant_id=namespace.tenant_id,
        namespace=namespace,
        customer_id=namespace.customer_id,
        subscription=subscription,
        from_plan=subscription.plan if subscription is not None else None,
        to_plan=new_plan,
        payload=payload,
        requires_manual_approval=new_plan.requires_manual_approval,
        state=State.WAITING_FOR_APPROVAL if new_plan.requires_manual_approval else State.CREATING,
    )
    if transition.state == State.CREATING:
        _enqueue(transition)
    return transition


@transaction.atomic
def plan_transition_approve(*, transition: PlanTransition, user=None) -> PlanTransition:
    transition = PlanTransition.objects.select_for_update().get(pk=transition.pk)
    if transition.state != State.WAITING_FOR_APPROVAL:
        raise Conflict(
            f"Only a transition waiting for approval can be approved ({transition.state})."
        )
    now = timezone.now()
    transition.state, transition.approved_by, transition.approved_at = State.CREATING, user, now
    transition.updated_at = now
    transition.save(update_fields=["state", "approved_by", "approved_at", "updated_at"])
    _enqueue(transition)
    return transition


@transaction.atomic
def plan_transition_reject(
    *, transition: PlanTransition, user=None, reason: str = "rejected by staff"
) -> PlanTransition:
    transition = PlanTransition.objects.select_for_update().get(pk=transition.pk)
    if transition.state != State.WAITING_FOR_APPROVAL:
        raise Conflict(
            f"Only a transition waiting for approval can be rejected ({transition.state})."
        )
    transition.approved_by = user
    _end(transition, State.FAILED, reason)
    return transition


def _end(transition: PlanTransition, state: str, reason: str = "") -> None:
    now = timezone.now()
    transition.state, transition.failure_reason = state, reason[:1024]
    transition.finished_at = transition.updated_at = now
    transition.save(
        update_fields=["state", "failure_reason", "finished_at", "updated_at", "approved_by"]
    )
    emit(
        tenant=transition.tenant,
        event_type="plan_transition.finished"
        if state == State.FINISHED
        else "plan_transition.failed",
        data=plan_transition_event_data(transition),
    )


def plan_transition_event_data(transition: PlanTransition) -> dict:
    return {
        "id": str(transition.pk),
        "state": transition.state,
        "namespace": transition.namespace.name,
        "customer": str(transition.customer_id),
        "subscription": str(transition.subscription_id) if transition.subscription_id else None,
        "from_plan": str(transition.from_plan_id) if transition.from_plan_id else None,
        "to_plan": str(transition.to_plan_id),
        "failure_reason": transition.failure_reason or None,
    }


def _claim(transition_id) -> bool:
    """Claim a CREATING transition for this worker (or take over one whose worker died)."""
    now = timezone.now()
    return bool(
        PlanTransition.objects.filter(pk=transition_id, state=State.CREATING)
        .exclude(started_at__gt=now - PLAN_TRANSITION_CLAIM_TIMEOUT)
        .update(started_at=now, updated_at=now)
    )


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        flat = flatten_validation_errors(error.detail)
        return "; ".join(message for messages in flat.values() for message in messages)
    if isinstance(error, APIException):
        reason = str(error.detail)
        extra = getattr(error, "extra", None) or {}
        if extra.get("failure_reason"):
            reason = f"{reason} ({extra['failure_reason']})"
        return reason
    if isinstance(error, DjangoValidationError):
        return "; ".join(error.messages)
    return str(error)


def plan_transition_execute(*, transition_id) -> PlanTransition | None:
    """The worker's part: move the customer's subscription to the new plan (prorated, through
    subscriptions.services), apply the add-on changes, end FINISHED or FAILED with the reason.

    Each step commits on its own (charges happen outside transactions) and is skipped when it is
    already done, so running a transition twice, or again after a crash, changes nothing twice."""
    if not _claim(transition_id):
        return PlanTransition.objects.filter(pk=transition_id).first()
    transition = PlanTransition.objects.select_related(
        "namespace", "namespace__customer", "to_plan", "tenant"
    ).get(pk=transition_id)
    try:
        _apply(transition)
    except (APIException, DjangoValidationError, ObjectDoesNotExist, ValueError) as error:
        with transaction.atomic():
            _end(transition, State.FAILED, _reason(error))
        return transition
    except Exception:
        logger.exception("plan transition %s failed unexpectedly", transition_id)
        with transaction.atomic():
            _end(transition, State.FAILED, "An unexpected error occurred; it has been logged.")
        return transition
    with transaction.atomic():
        _end(transition, State.FINISHED)
    return transition


def _apply(transition: PlanTransition) -> None:
    namespace = transition.namespace
    payload = dict(transition.payload or {})
    method = None
    token = payload.pop("payment_provider_token", None)
    if token:
        method = namespace_payment_method_create(
            namespace=namespace, role=Role.PRIMARY, token=token
        )
        payload["payment_method"] = method.name
        # The card token is spent: keep only the name of the payment method made from it.
        transition.payload = payload
        transition.save(update_fields=["payload"])
    elif payload.get("payment_method"):
        method = _namespace_methods(namespace).filter(name=payload["payment_method"]).first()

    subscription = selectors.namespace_subscription(namespace)
    if subscription is None:
        subscription = subscription_services.subscription_start(
            customer=namespace.customer,
            plan=transition.to_plan,
            payment_method=method,
            currency=namespace.customer.currency or namespace.tenant.currency,
        )
    elif subscription.plan_id != transition.to_plan_id:
        subscription = subscription_services.subscription_change_plan(
            subscription=subscription, plan=transition.to_plan, price=None, when="instantly"
        )
    if transition.subscription_id != subscription.pk:
        transition.subscription = subscription
        transition.save(update_fields=["subscription"])

    for code_name in payload.get("subscribe_addon_services") or []:
        addon_subscribe(
            namespace=namespace, addon=addon_plan_get(tenant=transition.tenant, code_name=code_name)
        )
    for code_name in payload.get("unsubscribe_addon_services") or []:
        addon_unsubscribe(
            namespace=namespace, addon=addon_plan_get(tenant=transition.tenant, code_name=code_name)
        )


def plan_transitions_resume(*, older_than: dt.timedelta = PLAN_TRANSITION_CLAIM_TIMEOUT) -> int:
    """Re-enqueue transitions left CREATING (an enqueue lost, a worker that died): the beat job."""
    from quotas import tasks

    now = timezone.now()
    stale = PlanTransition.objects.filter(state=State.CREATING, updated_at__lt=now - older_than)
    ids = list(stale.values_list("id", flat=True)[:500])
    for transition_id in ids:
        tasks.plan_transition_execute.delay(str(transition_id))
    return len(ids)
