"""Writes for the catalog and the subscription lifecycle: start, trial, seats and quantities,
plan and price changes, cancellation, and the steps the renewal engine (invoicing) calls.

Invoices, charges and refunds belong to `invoicing.services`; it is imported inside functions
because invoicing's models point at ours (and its services read them), so a module-level import
would be circular. Charges are gateway calls: they run after the transaction that issued the
invoice has committed, never inside it.
"""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from billing_project import billing_math
from customers.models import Customer
from subscriptions import selectors
from subscriptions.models import (
    Checkout,
    Feature,
    Metric,
    PlanLimit,
    Price,
    Product,
    Schedule,
    Subscription,
    SubscriptionItem,
    SubscriptionPlan,
    Voucher,
    VoucherRedemption,
)
from tenants.api.errors import Conflict, PaymentRequired
from webhooks.services import emit

Status = Subscription.Status
ItemType = SubscriptionItem.ItemType

# Which status may become which. Every status change goes through `_transition`.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    Status.TRIAL_ACTIVE: frozenset(
        {Status.ACTIVE, Status.TRIAL_ENDED, Status.PENDING_CANCEL, Status.CANCELLED}
    ),
    Status.ACTIVE: frozenset(
        {Status.PENDING_CANCEL, Status.OVERDUE_PAYMENT_OPEN, Status.CANCELLED, Status.BLOCKED}
    ),
    Status.PENDING_CANCEL: frozenset(
        {Status.ACTIVE, Status.OVERDUE_PAYMENT_OPEN, Status.CANCELLED, Status.TRIAL_ACTIVE}
    ),
    Status.OVERDUE_PAYMENT_OPEN: frozenset(
        {Status.ACTIVE, Status.OVERDUE_PAYMENT_DISABLED, Status.CANCELLED, Status.BLOCKED}
    ),
    Status.OVERDUE_PAYMENT_DISABLED: frozenset({Status.ACTIVE, Status.CANCELLED}),
    Status.BLOCKED: frozenset({Status.ACTIVE, Status.CANCELLED}),
    Status.TRIAL_ENDED: frozenset({Status.ACTIVE, Status.CANCELLED}),
    Status.CANCELLED: frozenset(),
}

# Subscriptions the renewal run bills; the others are in a trial, stopped or ended.
BILLABLE_STATUSES = frozenset({Status.ACTIVE, Status.PENDING_CANCEL, Status.OVERDUE_PAYMENT_OPEN})
# Subscriptions whose seats, quantities, plan and price may still be changed.
CHANGEABLE_STATUSES = frozenset({*BILLABLE_STATUSES, Status.TRIAL_ACTIVE})

CANCEL_WHEN = ("end-of-run", "instantly", "specific-date")
REFUND_TYPES = ("none", "full", "prorate")
CHANGE_WHEN = ("instantly", "next-cycle")


def _invoicing():
    from invoicing import services

    return services


def _now(at: dt.datetime | None = None) -> dt.datetime:
    return (at or timezone.now()).astimezone(dt.UTC)


def _subscription_event_data(subscription: Subscription) -> dict:
    from subscriptions.api.serializers import SubscriptionSerializer

    return SubscriptionSerializer(subscription).data


def _emit(subscription: Subscription, event_type: str) -> None:
    emit(
        tenant=subscription.tenant,
        event_type=event_type,
        data=_subscription_event_data(subscription),
    )


def _transition(subscription: Subscription, status: str) -> None:
    if status == subscription.status:
        return
    if status not in ALLOWED_TRANSITIONS[subscription.status]:
        raise Conflict(f"A subscription cannot go from {subscription.status} to {status}.")
    subscription.status = status


def _lock(subscription: Subscription) -> Subscription:
    """Re-read the subscription under a row lock (inside the caller's transaction)."""
    return (
        Subscription.objects.select_for_update()
        .select_related("plan", "price", "customer", "tenant")
        .get(pk=subscription.pk)
    )


def _reread(subscription: Subscription) -> Subscription:
    """Refresh the subscription after a change, with the plan and price its answer shows: a bare
    refresh_from_db() drops them, and serializing would load each again."""
    subscription.refresh_from_db(from_queryset=Subscription.objects.select_related("plan", "price"))
    return subscription


def _save(subscription: Subscription, *fields: str) -> None:
    subscription.updated_at = timezone.now()
    subscription.save(update_fields=[*fields, "updated_at"])


# --- Catalog -------------------------------------------------------------------------------------


def product_create(*, tenant, **fields) -> Product:
    return Product.objects.create(tenant=tenant, **fields)


def product_update(*, product: Product, **fields) -> Product:
    for name, value in fields.items():
        setattr(product, name, value)
    product.updated_at = timezone.now()
    product.save(update_fields=[*fields, "updated_at"])
    return product


# Changing these on a price that subscriptions use would silently change what they are billed.
PRICE_BILLING_FIELDS = frozenset(
    {"amount", "currency", "recurring", "schedule", "type", "units", "tiers", "usage", "metric"}
)


def price_create(*, tenant, product: Product, **fields) -> Price:
    return Price.objects.create(tenant=tenant, product=product, **fields)


def price_update(*, price: Price, **fields) -> Price:
    changed = {name for name, value in fields.items() if getattr(price, name) != value}
    if changed & PRICE_BILLING_FIELDS and _price_in_use(price):
        raise Conflict(
            "This price is used by subscriptions, so its billing terms "
            f"({', '.join(sorted(changed & PRICE_BILLING_FIELDS))}) cannot change; "
            "create a new price and move the subscriptions with change-price."
        )
    for name, value in fields.items():
        setattr(price, name, value)
    price.save(update_fields=list(fields) or None)
    return price


def _price_in_use(price: Price) -> bool:
    return SubscriptionItem.objects.for_tenant(price.tenant).filter(price=price).exists()


def _save_with_unique_code(instance, *, update_fields=None):
    """Save a catalog row whose `code` is unique per tenant; a taken code is a 400 on `code`."""
    try:
        with transaction.atomic():
            instance.save(update_fields=update_fields)
    except IntegrityError:
        noun = instance._meta.verbose_name
        raise ValidationError({"code": [f"code is already used by another {noun}"]}) from None
    return instance


def _update_with_unique_code(instance, fields: dict):
    for name, value in fields.items():
        setattr(instance, name, value)
    return _save_with_unique_code(instance, update_fields=list(fields) or None)


def metric_create(*, tenant, **fields) -> Metric:
    return _save_with_unique_code(Metric(tenant=tenant, **fields))


def metric_update(*, metric: Metric, **fields) -> Metric:
    return _update_with_unique_code(metric, fields)


def feature_create(*, tenant, **fields) -> Feature:
    return _save_with_unique_code(Feature(tenant=tenant, **fields))


@transaction.atomic
def plan_save(
    *,
    tenant,
    plan: SubscriptionPlan | None = None,
    features: list[Feature] | None = None,
    limits: list[tuple[Feature, int]] | None = None,
    prices: list[Price] | None = None,
    **fields,
) -> SubscriptionPlan:
    """Create (`plan` None) or update a plan; `features`, `limits` and `prices` replace the plan's
    when given."""
    code_name = fields.get("code_name")
    if code_name is not None:
        taken = SubscriptionPlan.objects.for_tenant(tenant).filter(code_name=code_name)
        if plan is not None:
            taken = taken.exclude(pk=plan.pk)
        if taken.exists():
            raise ValidationError({"code_name": ["code_name is already used by another plan"]})
    if plan is None:
        plan = SubscriptionPlan.objects.create(tenant=tenant, **fields)
    else:
        for name, value in fields.items():
            setattr(plan, name, value)
        plan.updated_at = timezone.now()
        plan.save()
    if features is not None:
        plan.features.set(features)
    if prices is not None:
        plan.prices.set(prices)
    if limits is not None:
        PlanLimit.objects.filter(plan=plan).delete()
        PlanLimit.objects.bulk_create(
            PlanLimit(tenant=tenant, plan=plan, feature=feature, limit=limit)
            for feature, limit in limits
        )
    return plan


def voucher_create(*, tenant, **fields) -> Voucher:
    return _save_with_unique_code(Voucher(tenant=tenant, **fields))


def voucher_update(*, voucher: Voucher, **fields) -> Voucher:
    return _update_with_unique_code(voucher, fields)


@transaction.atomic
def voucher_apply(*, customer: Customer, code: str) -> VoucherRedemption:
    """Redeem the voucher `code` for `customer`. The voucher row is locked so that concurrent
    redemptions cannot go past `max_redemptions`."""
    voucher = (
        Voucher.objects.for_tenant(customer.tenant).select_for_update().filter(code=code).first()
    )
    if voucher is None:
        raise ValidationError({"code": ["code is not a known voucher"]})
    if voucher.disabled:
        raise ValidationError({"code": ["code is a disabled voucher"]})
    redeemed = voucher.redemptions.count()
    if voucher.max_redemptions is not None and redeemed >= voucher.max_redemptions:
        raise ValidationError({"code": ["code has been redeemed as often as it may be"]})
    if voucher.redemptions.filter(customer=customer).exists():
        raise ValidationError({"code": ["code has already been applied to this customer"]})
    return VoucherRedemption.objects.create(
        tenant=customer.tenant,
        customer=customer,
        voucher=voucher,
        remaining_cycles=voucher.cycles,
    )


class VoucherDiscount(NamedTuple):
    """Unpacks as `(redemption, percentage, fixed_credit_minor)`."""

    redemption: VoucherRedemption
    percentage: Decimal | None
    fixed_credit_minor: int | None


def voucher_redemptions_consume(*, customer: Customer, currency: str) -> list[VoucherDiscount]:
    """The discounts the customer's next invoice gets, consuming one cycle of each redemption.
    Call it inside the transaction that issues the invoice (it locks the redemptions). A fixed
    credit voucher without an amount in `currency` is skipped and not consumed."""
    discounts = []
    redemptions = (
        VoucherRedemption.objects.for_tenant(customer.tenant)
        .select_for_update()
        .filter(customer=customer, active=True)
        .select_related("voucher")
        .order_by("id")
    )
    for redemption in redemptions:
        voucher = redemption.voucher
        if voucher.type == Voucher.Type.PERCENTAGE:
            discount = VoucherDiscount(redemption, voucher.percentage, None)
        else:
            credit = voucher.credit_for(currency)
            if credit is None:
                continue
            discount = VoucherDiscount(redemption, None, credit)
        discounts.append(discount)
        if redemption.remaining_cycles is not None:
            redemption.remaining_cycles -= 1
            redemption.active = redemption.remaining_cycles > 0
            redemption.save(update_fields=["remaining_cycles", "active"])
    return discounts


# --- Prices and lines ----------------------------------------------------------------------------


def item_fee(price: Price, quantity: int) -> int:
    """The fixed fee of `quantity` units of `price` for one period, in minor units. A fixed price
    is per unit here (per seat, per add-on), the other types price the quantity as a whole."""
    price_type = Price.Type.PER_UNIT if price.type == Price.Type.FIXED_PRICE else price.type
    return billing_math.price_amount(
        price_type,
        Decimal(quantity),
        amount=price.amount,
        units=price.units,
        tiers=billing_math.parse_tiers(price.tiers) if price.tiers else None,
        currency=price.currency,
    )


def _line(
    *,
    description: str,
    kind: str,
    amount: int,
    item: SubscriptionItem | None = None,
    price: Price | None = None,
    quantity: int = 1,
    period_start=None,
    period_end=None,
):
    price = price or (item.price if item is not None else None)
    return _invoicing().LineDraft(
        description=description,
        kind=kind,
        amount=amount,
        quantity=Decimal(quantity),
        unit_price=Decimal(price.amount) if price is not None else None,
        tax_type=price.product.tax_type if price is not None else "standard",
        including_tax=price.including_tax if price is not None else False,
        period_start=period_start,
        period_end=period_end,
        subscription_item_id=item.id if item is not None else None,
    )


def _fixed_items(subscription: Subscription, period_start, period_end):
    return (
        SubscriptionItem.objects.for_tenant(subscription.tenant)
        .filter(subscription=subscription, item_type__in=[ItemType.PLAN, ItemType.ADDON])
        .exclude(active_to__isnull=False, active_to__lte=period_start)
        .exclude(active_from__isnull=False, active_from__gte=period_end)
        .select_related("price", "price__product", "product", "subscription__plan")
        .order_by("id")
    )


def renewal_lines(subscription: Subscription, period_start, period_end) -> list:
    """The fixed fees of `[period_start, period_end)`, billed in advance: the plan item and the
    add-on items live in that period, each for its quantity. Metered items are not here: their
    charges (in arrears, and commitments in advance) belong to the usage pipeline."""
    return [
        _renewal_line(item, period_start, period_end)
        for item in _fixed_items(subscription, period_start, period_end)
    ]


def renewal_lines_many(subscriptions: list, periods: dict) -> dict:
    """`renewal_lines` for a batch in one query: `periods` maps a subscription id to its
    `(period_start, period_end)`; the answer maps it to its lines."""
    by_id = {subscription.pk: subscription for subscription in subscriptions}
    items = (
        SubscriptionItem.objects.filter(
            subscription_id__in=list(by_id), item_type__in=[ItemType.PLAN, ItemType.ADDON]
        )
        .select_related("price", "price__product", "product", "subscription__plan")
        .order_by("id")
    )
    lines: dict = {pk: [] for pk in by_id}
    for item in items:
        start, end = periods[item.subscription_id]
        if item.active_to is not None and item.active_to <= start:
            continue
        if item.active_from is not None and item.active_from >= end:
            continue
        lines[item.subscription_id].append(_renewal_line(item, start, end))
    return lines


def _renewal_line(item: SubscriptionItem, period_start, period_end):
    label = item.subscription.plan.name if item.item_type == ItemType.PLAN else item.product.name
    return _line(
        description=f"{label} x {item.quantity}" if item.quantity != 1 else label,
        kind="subscription",
        amount=item_fee(item.price, item.quantity),
        item=item,
        quantity=item.quantity,
        period_start=period_start,
        period_end=period_end,
    )


def _proration_lines(
    subscription: Subscription,
    *,
    item: SubscriptionItem,
    old_amount: int,
    new_amount: int,
    new_price: Price,
    at: dt.datetime,
    what: str,
) -> list:
    """A credit for the unused time of the old fee and a charge for the rest of the period at the
    new one (billing_math.prorated_change); nothing when the period has no time left."""
    start, end = subscription.current_period_start, subscription.valid_until
    credit, charge = billing_math.prorated_change(
        old_amount, new_amount, start, end, at, subscription.currency
    )
    lines = []
    if credit:
        lines.append(
            _line(
                description=f"Unused time on {what} (before the change)",
                kind="proration",
                amount=credit,
                item=item,
                period_start=at,
                period_end=end,
            )
        )
    if charge:
        lines.append(
            _line(
                description=f"Remaining time on {what} (after the change)",
                kind="proration",
                amount=charge,
                item=item,
                price=new_price,
                period_start=at,
                period_end=end,
            )
        )
    return lines


def _bill_change(subscription: Subscription, lines: list):
    """Mid-period change lines: on the next invoice, or on an invoice of their own now when the
    tenant invoices changes immediately. Returns the invoice to charge after commit, if any."""
    if not lines:
        return None
    invoicing = _invoicing()
    if subscription.tenant.invoice_changes_immediately:
        return invoicing.invoice_issue(
            customer=subscription.customer,
            currency=subscription.currency,
            lines=lines,
            subscription=subscription,
            billing_reason="change",
        )
    for line in lines:
        invoicing.pending_line_add(subscription=subscription, line=line)
    return None


def _needs_charge(invoice) -> bool:
    return invoice is not None and invoice.status == "open" and invoice.amount_due > 0


def _charge_change_invoice(subscription: Subscription, invoice) -> None:
    """Charge a change invoice of a card customer. A failure does not undo the change: the invoice
    stays open and dunning retries it, as for a failed renewal."""
    if _needs_charge(invoice) and subscription.customer.billing_type == Customer.BillingType.CARD:
        _invoicing().invoice_charge(invoice=invoice, payment_method=_payment_method(subscription))


def _payment_method(subscription: Subscription):
    if subscription.payment_method_id:
        return subscription.payment_method
    return _invoicing().payment_method_for_charge(
        customer=subscription.customer, subscription=subscription
    )


# --- Start and trial -----------------------------------------------------------------------------


def _resolve_price(
    *, plan: SubscriptionPlan, price: Price | None, currency: str | None, schedule: str | None
) -> Price:
    if price is not None:
        if not plan.prices.filter(pk=price.pk).exists():
            raise ValidationError({"price": ["price is not one of the plan's prices"]})
        if price.usage or not price.recurring or price.schedule in ("", Schedule.ONE_OFF):
            raise ValidationError({"price": ["price must be a recurring, non-usage price"]})
        return price
    default = selectors.plan_default_price(plan=plan, currency=currency, schedule=schedule)
    if default is None:
        raise ValidationError(
            {
                "price": [
                    "price is missing: the plan has no recurring price for this currency "
                    "and schedule"
                ]
            }
        )
    return default


def _usage_prices(plan: SubscriptionPlan, currency: str, schedule: str):
    return (
        plan.prices.filter(usage=True, currency=currency)
        .exclude(schedule__in=[s for s in Schedule.values if s != schedule and s != ""])
        .select_related("product", "metric")
        .order_by("id")
    )


def _create_items(subscription: Subscription, *, at: dt.datetime | None = None) -> None:
    price = subscription.price
    items = [
        SubscriptionItem(
            tenant=subscription.tenant,
            subscription=subscription,
            item_type=ItemType.PLAN,
            product=price.product,
            price=price,
            quantity=subscription.seat_number,
            unit_price=Decimal(price.amount),
            active_from=at,
        )
    ]
    for usage_price in _usage_prices(subscription.plan, subscription.currency, price.schedule):
        items.append(
            SubscriptionItem(
                tenant=subscription.tenant,
                subscription=subscription,
                item_type=ItemType.USAGE,
                product=usage_price.product,
                price=usage_price,
                quantity=1,
                unit_price=Decimal(usage_price.amount),
                metric=usage_price.metric,
                active_from=at,
            )
        )
    SubscriptionItem.objects.bulk_create(items)


def _check_customer(customer: Customer) -> None:
    if not customer.is_active:
        raise Conflict("The customer is disabled.")


def _resolve_payment_method(*, customer: Customer, payment_method=None, card_token=None):
    """The payment method given, made from the card token, or the customer's default. A token the
    gateway refuses is a 402 like a declined charge."""
    from invoicing.gateways import CardError

    invoicing = _invoicing()
    if payment_method is not None:
        return payment_method
    if card_token:
        try:
            return invoicing.payment_method_from_card_token(
                customer=customer, card_token=card_token
            )
        except CardError as error:
            raise PaymentRequired(
                "The card was refused.", extra={"failure_reason": error.failure_reason}
            ) from None
    return invoicing.payment_method_for_charge(customer=customer)


def subscription_start(
    *,
    customer: Customer,
    plan: SubscriptionPlan,
    price: Price | None = None,
    schedule: str | None = None,
    currency: str | None = None,
    seat_number: int = 1,
    payment_method=None,
    card_token: str | None = None,
    deny_trial: bool = False,
    metadata: dict | None = None,
    at: dt.datetime | None = None,
) -> Subscription:
    """Start a paid subscription and bill its first period in advance. A plan with a trial starts
    a trial instead, unless `deny_trial`.

    Card customers are charged at once, after the transaction that created the subscription and
    its invoice has committed (the gateway is a network call). When that charge fails the
    subscription is not deleted but moved to `cancelled` (ended at once, reason in its metadata)
    and its invoice voided: the invoice already holds a number of the tenant's gapless sequence,
    and an auditor must be able to follow both the attempt and why it stopped, so nothing is
    erased. Raises PaymentRequired (402) with the gateway's `failure_reason`.
    """
    _check_customer(customer)
    if plan.is_addon:
        raise ValidationError(
            {"subscription_plan": ["subscription_plan must not be an add-on plan"]}
        )
    if plan.has_trial and not deny_trial:
        return subscription_start_trial(
            customer=customer,
            plan=plan,
            price=price,
            currency=currency,
            schedule=schedule,
            card_token=card_token,
            payment_method=payment_method,
            seat_number=seat_number,
            metadata=metadata,
            at=at,
        )
    price = _resolve_price(
        plan=plan, price=price, currency=currency or customer.currency or None, schedule=schedule
    )
    is_card = customer.billing_type == Customer.BillingType.CARD
    method = None
    if is_card and not plan.free and price.amount > 0:
        method = _resolve_payment_method(
            customer=customer, payment_method=payment_method, card_token=card_token
        )
        if method is None:
            raise ValidationError(
                {
                    "payment_method": [
                        "payment_method is required: a card customer needs a card_token, a "
                        "payment_method or a default payment method"
                    ]
                }
            )
    subscription, invoice = _start_paid(
        customer=customer,
        plan=plan,
        price=price,
        seat_number=seat_number,
        payment_method=method if payment_method is not None or card_token else None,
        metadata=metadata or {},
        at=_now(at),
    )
    if is_card and _needs_charge(invoice):
        result = _invoicing().invoice_charge(invoice=invoice, payment_method=method)
        if not result.paid:
            _fail_start(subscription, invoice=invoice, failure_reason=result.failure_reason)
            raise PaymentRequired(
                "The first payment failed; the subscription was not started.",
                extra={"failure_reason": result.failure_reason},
            )
    return _reread(subscription)


def _subscription_create(
    *,
    customer,
    plan,
    price,
    seat_number,
    status,
    started_at,
    first_period_end,
    metadata,
    payment_method,
    trial_ends_at=None,
) -> Subscription:
    """The new subscription anchored at `started_at`, with its items, announced."""
    subscription = Subscription.objects.create(
        tenant=customer.tenant,
        customer=customer,
        plan=plan,
        price=price,
        seat_number=seat_number,
        schedule=price.schedule,
        currency=price.currency,
        status=status,
        anchor=started_at,
        period_index=0,
        current_period_start=started_at,
        valid_until=first_period_end,
        started_at=started_at,
        trial_ends_at=trial_ends_at,
        metadata=metadata or {},
        payment_method=payment_method,
    )
    _create_items(subscription)
    _emit(subscription, "subscription.created")
    return subscription


@transaction.atomic
def _start_paid(*, customer, plan, price, seat_number, payment_method, metadata, at):
    start, end = billing_math.period_bounds(at, price.schedule, 0)
    subscription = _subscription_create(
        customer=customer,
        plan=plan,
        price=price,
        seat_number=seat_number,
        status=Status.ACTIVE,
        started_at=at,
        first_period_end=end,
        metadata=metadata,
        payment_method=payment_method,
    )
    invoice = _invoicing().invoice_issue(
        customer=customer,
        currency=subscription.currency,
        lines=renewal_lines(subscription, start, end),
        subscription=subscription,
        period_start=start,
        period_end=end,
        billing_reason="subscription_start",
    )
    return subscription, invoice


@transaction.atomic
def _fail_start(subscription: Subscription, *, invoice, failure_reason: str | None) -> None:
    _cancel_unpaid_start(subscription, failure_reason=failure_reason)
    _invoicing().invoice_void(invoice=invoice, reason=f"First payment failed: {failure_reason}")


def _cancel_unpaid_start(subscription: Subscription, *, failure_reason: str | None) -> None:
    """End at once a subscription whose first payment failed (kept, not deleted: see
    subscription_start)."""
    subscription = _lock(subscription)
    now = timezone.now()
    _transition(subscription, Status.CANCELLED)
    subscription.ended_at = subscription.cancel_at = now
    subscription.metadata = {
        **subscription.metadata,
        "cancellation_reason": "first_payment_failed",
        "failure_reason": failure_reason,
    }
    _save(subscription, "status", "ended_at", "cancel_at", "metadata")
    SubscriptionItem.objects.filter(subscription=subscription).update(active_to=now)
    _emit(subscription, "subscription.cancelled")


@transaction.atomic
def subscription_start_trial(
    *,
    customer: Customer,
    plan: SubscriptionPlan,
    price: Price | None = None,
    currency: str | None = None,
    schedule: str | None = None,
    card_token: str | None = None,
    payment_method=None,
    seat_number: int = 1,
    trial_length_days: int | None = None,
    metadata: dict | None = None,
    at: dt.datetime | None = None,
) -> Subscription:
    """Start a trial: no invoice now. The price the trial converts to is the given one or the
    plan's default in the customer's (else the tenant's) currency."""
    _check_customer(customer)
    if plan.is_addon:
        raise ValidationError(
            {"subscription_plan": ["subscription_plan must not be an add-on plan"]}
        )
    days = trial_length_days if trial_length_days is not None else plan.trial_length_days
    if not days or days < 1:
        raise ValidationError(
            {"trial_length_days": ["trial_length_days must be at least 1 (the plan has no trial)"]}
        )
    price = _resolve_price(
        plan=plan,
        price=price,
        currency=currency or customer.currency or customer.tenant.currency,
        schedule=schedule,
    )
    method = None
    if card_token or payment_method is not None:
        method = _resolve_payment_method(
            customer=customer, payment_method=payment_method, card_token=card_token
        )
    at = _now(at)
    trial_end = at + dt.timedelta(days=days)
    return _subscription_create(
        customer=customer,
        plan=plan,
        price=price,
        seat_number=seat_number,
        status=Status.TRIAL_ACTIVE,
        started_at=at,
        first_period_end=trial_end,
        trial_ends_at=trial_end,
        metadata=metadata,
        payment_method=method,
    )


@transaction.atomic
def _convert_trial(subscription: Subscription, *, at: dt.datetime, price: Price | None, reason):
    subscription = _lock(subscription)
    if subscription.status not in (Status.TRIAL_ACTIVE, Status.TRIAL_ENDED):
        raise Conflict(
            f"Only a trial can be converted; this subscription is {subscription.status}."
        )
    if price is not None and price.pk != subscription.price_id:
        price = _resolve_price(plan=subscription.plan, price=price, currency=None, schedule=None)
        subscription.price, subscription.schedule, subscription.currency = (
            price,
            price.schedule,
            price.currency,
        )
        SubscriptionItem.objects.filter(subscription=subscription, item_type=ItemType.PLAN).update(
            price=price, product=price.product, unit_price=Decimal(price.amount)
        )
    start, end = billing_math.period_bounds(at, subscription.schedule, 0)
    _transition(subscription, Status.ACTIVE)
    subscription.anchor, subscription.period_index = at, 0
    subscription.current_period_start, subscription.valid_until = start, end
    _save(
        subscription,
        "status",
        "anchor",
        "period_index",
        "current_period_start",
        "valid_until",
        "price",
        "schedule",
        "currency",
    )
    invoice = _invoicing().invoice_issue(
        customer=subscription.customer,
        currency=subscription.currency,
        lines=renewal_lines(subscription, start, end),
        subscription=subscription,
        period_start=start,
        period_end=end,
        billing_reason=reason,
    )
    _emit(subscription, "subscription.updated")
    return subscription, invoice


def subscription_extend(
    *, subscription: Subscription, price: Price | None = None, at: dt.datetime | None = None
) -> Subscription:
    """Convert a trial to a paid subscription now (seed 001 "extend"): the first period is
    invoiced in advance and, for a card customer, charged. A failed charge leaves the trial as it
    was and voids the invoice (402)."""
    at = _now(at)
    previous = _lock_snapshot(subscription)
    subscription, invoice = _convert_trial(
        subscription, at=at, price=price, reason="trial_conversion"
    )
    if subscription.customer.billing_type == Customer.BillingType.CARD and _needs_charge(invoice):
        method = _payment_method(subscription)
        result = (
            _invoicing().invoice_charge(invoice=invoice, payment_method=method)
            if method is not None
            else None
        )
        if result is None or not result.paid:
            reason = result.failure_reason if result is not None else "invalid_details"
            _restore_trial(subscription, previous=previous, invoice=invoice, reason=reason)
            raise PaymentRequired(
                "The payment failed; the subscription stays in its trial.",
                extra={"failure_reason": reason},
            )
    return _reread(subscription)


_PERIOD_FIELDS = (
    "status",
    "anchor",
    "period_index",
    "current_period_start",
    "valid_until",
    "price_id",
    "schedule",
    "currency",
)


def _lock_snapshot(subscription: Subscription) -> dict:
    subscription.refresh_from_db()
    return {name: getattr(subscription, name) for name in _PERIOD_FIELDS}


@transaction.atomic
def _restore_trial(subscription, *, previous: dict, invoice, reason) -> None:
    subscription = _lock(subscription)
    for name, value in previous.items():
        setattr(subscription, name, value)
    _save(subscription, *(name.removesuffix("_id") for name in _PERIOD_FIELDS))
    price = Price.objects.get(pk=previous["price_id"])
    SubscriptionItem.objects.filter(subscription=subscription, item_type=ItemType.PLAN).update(
        price=price, product=price.product, unit_price=Decimal(price.amount)
    )
    _invoicing().invoice_void(invoice=invoice, reason=f"Trial conversion payment failed: {reason}")


def subscription_end_trial(subscription: Subscription, at: dt.datetime):
    """The renewal engine's step for a trial whose end has come. A standalone trial, or a customer
    without a payment method (card customers), ends (`trial_ended`); otherwise the subscription
    converts to `active` with its first invoice (billing_reason trial_conversion), charged at once
    for card customers. A failed charge makes it `overdue_payment_open` for dunning.
    Call it outside any transaction: the charge is a gateway call. Returns the invoice or None."""
    at = _now(at)
    subscription.refresh_from_db()
    if subscription.status != Status.TRIAL_ACTIVE:
        return None
    customer = subscription.customer
    is_card = customer.billing_type == Customer.BillingType.CARD
    method = _payment_method(subscription) if is_card else None
    if subscription.plan.is_trial_standalone or (is_card and method is None):
        _trial_ended(subscription)
        return None
    trial_end = subscription.trial_ends_at or at
    subscription, invoice = _convert_trial(
        subscription, at=min(trial_end, at), price=None, reason="trial_conversion"
    )
    if is_card and _needs_charge(invoice):
        result = _invoicing().invoice_charge(invoice=invoice, payment_method=method)
        if not result.paid:
            subscription_set_overdue(subscription)
    return invoice


@transaction.atomic
def _trial_ended(subscription: Subscription) -> None:
    subscription = _lock(subscription)
    _transition(subscription, Status.TRIAL_ENDED)
    subscription.ended_at = subscription.trial_ends_at or timezone.now()
    _save(subscription, "status", "ended_at")
    _emit(subscription, "subscription.updated")


@transaction.atomic
def subscription_set_overdue(subscription: Subscription) -> Subscription:
    """Dunning's first step after a failed renewal charge: `overdue_payment_open`."""
    subscription = _lock(subscription)
    if subscription.status != Status.OVERDUE_PAYMENT_OPEN:
        _transition(subscription, Status.OVERDUE_PAYMENT_OPEN)
        _save(subscription, "status")
        _emit(subscription, "subscription.updated")
    return subscription


def subscription_payment_recovered(*, subscription: Subscription) -> Subscription:
    """A late payment succeeded: an overdue subscription is active again."""
    with transaction.atomic():
        subscription = _lock(subscription)
        if subscription.status in (Status.OVERDUE_PAYMENT_OPEN, Status.OVERDUE_PAYMENT_DISABLED):
            _transition(subscription, Status.ACTIVE)
            _save(subscription, "status")
            _emit(subscription, "subscription.updated")
    return subscription


@transaction.atomic
def subscription_disable_for_nonpayment(*, subscription: Subscription) -> Subscription:
    """Dunning gave up and the tenant disables: `overdue_payment_disabled` (not renewed)."""
    subscription = _lock(subscription)
    if subscription.status == Status.OVERDUE_PAYMENT_OPEN:
        _transition(subscription, Status.OVERDUE_PAYMENT_DISABLED)
        _save(subscription, "status")
        _emit(subscription, "subscription.updated")
    return subscription


@transaction.atomic
def subscription_cancel_for_nonpayment(
    *, subscription: Subscription, at: dt.datetime | None = None
) -> Subscription:
    """Dunning gave up and the tenant cancels: the subscription ends now. Its last period's
    unbilled usage up to now is invoiced as on any other cancellation (a `final_usage` invoice,
    issued in this transaction while the subscription is held) and charged once the transaction
    commits; a decline goes through dunning like any invoice, and cannot end the subscription
    twice."""
    subscription = _lock(subscription)
    if subscription.status != Status.CANCELLED:
        at = _now(at)
        subscription.cancel_at = at
        subscription.metadata = {**subscription.metadata, "cancellation_reason": "nonpayment"}
        _end(subscription, at=at)
        _save(subscription, "status", "cancel_at", "ended_at", "metadata")
        _emit(subscription, "subscription.cancelled")
        engine = _engine()
        charges = engine.final_usage_invoices_issue(subscriptions=[subscription], at=at)
        if charges.invoices:
            transaction.on_commit(lambda: engine.final_usage_invoices_charge(charges, at=at))
    return subscription


# --- Seats, quantities, items --------------------------------------------------------------------


def _check_changeable(subscription: Subscription) -> None:
    if subscription.status not in CHANGEABLE_STATUSES:
        raise Conflict(f"A {subscription.status} subscription cannot be changed.")


def _item_quantity_change(
    subscription: Subscription, item: SubscriptionItem, quantity: int, *, at: dt.datetime
):
    """Set an item's quantity, prorating the difference for the rest of the period (nothing to
    prorate in a trial, which has not been billed)."""
    if quantity < 1:
        raise ValidationError({"quantity": ["quantity must not be less than 1"]})
    old_quantity = item.quantity
    lines = []
    if subscription.status != Status.TRIAL_ACTIVE and quantity != old_quantity:
        what = subscription.plan.name if item.item_type == ItemType.PLAN else item.product.name
        lines = _proration_lines(
            subscription,
            item=item,
            old_amount=item_fee(item.price, old_quantity),
            new_amount=item_fee(item.price, quantity),
            new_price=item.price,
            at=at,
            what=f"{what} x {old_quantity} → {quantity}",
        )
    item.quantity = quantity
    item.updated_at = timezone.now()
    item.save(update_fields=["quantity", "updated_at"])
    if item.item_type == ItemType.PLAN:
        subscription.seat_number = quantity
        _save(subscription, "seat_number")
    invoice = _bill_change(subscription, lines)
    _emit(subscription, "subscription.updated")
    return invoice


def _plan_item(subscription: Subscription) -> SubscriptionItem:
    return (
        SubscriptionItem.objects.select_related("price", "price__product", "product")
        .filter(subscription=subscription, item_type=ItemType.PLAN, active_to__isnull=True)
        .order_by("-id")
        .first()
    )


def subscription_seats_change(
    *, subscription: Subscription, delta: int, at: dt.datetime | None = None
) -> Subscription:
    """Add (delta > 0) or remove (delta < 0) seats of a per-seat subscription, prorated."""
    at = _now(at)
    with transaction.atomic():
        subscription = _lock(subscription)
        _check_changeable(subscription)
        if not subscription.plan.per_seat:
            raise Conflict("Seats can only be changed on a per-seat plan.")
        new_count = subscription.seat_number + delta
        if new_count < 1:
            raise ValidationError(
                {"seats": [f"seats would leave {new_count} seats; at least 1 must remain"]}
            )
        invoice = _item_quantity_change(subscription, _plan_item(subscription), new_count, at=at)
    _charge_change_invoice(subscription, invoice)
    return _reread(subscription)


def subscription_item_quantity_change(
    *,
    item: SubscriptionItem,
    action: str,
    quantity: int,
    at: dt.datetime | None = None,
) -> SubscriptionItem:
    """Seed 000: SET the item's quantity to `quantity`, or UPDATE it by `quantity` (±)."""
    at = _now(at)
    with transaction.atomic():
        subscription = _lock(item.subscription)
        _check_changeable(subscription)
        item = SubscriptionItem.objects.select_related("price", "price__product", "product").get(
            pk=item.pk
        )
        if action == "SET":
            new_quantity = quantity
        else:
            if quantity == 0:
                raise ValidationError({"quantity": ["quantity must not be equal to 0"]})
            new_quantity = item.quantity + quantity
            if new_quantity < 1:
                raise ValidationError(
                    {
                        "quantity": [
                            f"quantity would take the current quantity ({item.quantity}) below 1"
                        ]
                    }
                )
        invoice = _item_quantity_change(subscription, item, new_quantity, at=at)
    _charge_change_invoice(subscription, invoice)
    item.refresh_from_db()
    return item


def subscription_item_add(
    *,
    subscription: Subscription,
    item_type: str,
    price: Price,
    quantity: int = 1,
    at: dt.datetime | None = None,
) -> SubscriptionItem:
    """Add an add-on (a fixed fee, prorated for the rest of the period) or a metered item."""
    at = _now(at)
    with transaction.atomic():
        subscription = _lock(subscription)
        _check_changeable(subscription)
        if price.currency != subscription.currency:
            raise ValidationError({"price": ["price must be in the subscription's currency"]})
        if item_type == ItemType.USAGE and not price.usage:
            raise ValidationError({"price": ["price must be a usage price for a usage item"]})
        if item_type == ItemType.ADDON and (price.usage or not price.recurring):
            raise ValidationError(
                {"price": ["price must be a recurring, non-usage price for an add-on"]}
            )
        if item_type == ItemType.ADDON and price.schedule != subscription.schedule:
            raise ValidationError({"price": ["price must have the subscription's schedule"]})
        item = SubscriptionItem.objects.create(
            tenant=subscription.tenant,
            subscription=subscription,
            item_type=item_type,
            product=price.product,
            price=price,
            quantity=quantity if item_type == ItemType.ADDON else 1,
            unit_price=Decimal(price.amount),
            metric=price.metric,
            active_from=at,
        )
        lines = []
        if item_type == ItemType.ADDON and subscription.status != Status.TRIAL_ACTIVE:
            lines = _proration_lines(
                subscription,
                item=item,
                old_amount=0,
                new_amount=item_fee(price, item.quantity),
                new_price=price,
                at=at,
                what=f"{price.product.name} x {item.quantity}",
            )
        invoice = _bill_change(subscription, lines)
        _emit(subscription, "subscription.updated")
    _charge_change_invoice(subscription, invoice)
    return item


SUBSCRIPTION_ITEM_FIELDS = frozenset(
    {"description", "comment", "active_from", "active_to", "calc_rule_type", "pricing", "quantity"}
)


@transaction.atomic
def subscription_item_update(*, item: SubscriptionItem, **fields) -> SubscriptionItem:
    """Edit an item's description, comment, active range and (metered items) seed-002 pricing.
    A quantity change of a plan or add-on item is prorated like a seed-000 SET."""
    unknown = set(fields) - SUBSCRIPTION_ITEM_FIELDS
    if unknown:
        raise TypeError(f"Unknown subscription item fields: {sorted(unknown)}")
    quantity = fields.pop("quantity", None)
    if quantity is not None and quantity != item.quantity:
        if item.item_type == ItemType.USAGE:
            raise ValidationError({"quantity": ["quantity cannot be set on a metered item"]})
        subscription_item_quantity_change(item=item, action="SET", quantity=quantity)
        item.refresh_from_db()
    if fields:
        active_from = fields.get("active_from", item.active_from)
        active_to = fields.get("active_to", item.active_to)
        if active_from and active_to and active_to <= active_from:
            raise ValidationError({"active_to": ["active_to must be after active_from"]})
        for name, value in fields.items():
            setattr(item, name, value)
        item.updated_at = timezone.now()
        item.save(update_fields=[*fields, "updated_at"])
        subscription = _lock(item.subscription)
        _emit(subscription, "subscription.updated")
    return item


@transaction.atomic
def subscription_item_remove(*, item: SubscriptionItem, at: dt.datetime | None = None) -> None:
    """End an add-on or metered item now (kept for the invoices that refer to it). An add-on's
    unused time is credited on the next invoice. The plan item cannot be removed: change the plan
    or cancel the subscription instead."""
    at = _now(at)
    subscription = _lock(item.subscription)
    if item.item_type == ItemType.PLAN:
        raise Conflict("The plan item cannot be removed; change the plan or cancel instead.")
    if item.active_to is not None and item.active_to <= at:
        return
    lines = []
    if item.item_type == ItemType.ADDON and subscription.status in BILLABLE_STATUSES:
        lines = _proration_lines(
            subscription,
            item=item,
            old_amount=item_fee(item.price, item.quantity),
            new_amount=0,
            new_price=item.price,
            at=at,
            what=f"{item.product.name} x {item.quantity}",
        )
    item.active_to = at
    item.updated_at = timezone.now()
    item.save(update_fields=["active_to", "updated_at"])
    _bill_change(subscription, lines)
    _emit(subscription, "subscription.updated")


# --- Plan and price changes ----------------------------------------------------------------------


def subscription_change_plan(
    *,
    subscription: Subscription,
    plan: SubscriptionPlan,
    price: Price | None,
    when: str,
    at: dt.datetime | None = None,
) -> Subscription:
    """Move to another plan (and price). `instantly`: the old fee's unused time is credited and
    the new fee charged for the rest of the period; `next-cycle`: stored in `pending_change` and
    applied by the renewal (`subscription_apply_pending_change`)."""
    if plan.is_addon:
        raise ValidationError({"plan": ["plan must not be an add-on plan"]})
    if price is None and when == "next-cycle":
        # A next-cycle change may move to another schedule when the plan has no price in the
        # current one.
        price = selectors.plan_default_price(
            plan=plan, currency=subscription.currency, schedule=subscription.schedule
        ) or selectors.plan_default_price(plan=plan, currency=subscription.currency, schedule=None)
    price = _resolve_price(
        plan=plan, price=price, currency=subscription.currency, schedule=subscription.schedule
    )
    return _change(subscription=subscription, plan=plan, price=price, when=when, at=at)


def subscription_change_price(
    *, subscription: Subscription, price: Price, when: str, at: dt.datetime | None = None
) -> Subscription:
    price = _resolve_price(plan=subscription.plan, price=price, currency=None, schedule=None)
    return _change(subscription=subscription, plan=subscription.plan, price=price, when=when, at=at)


def _change(*, subscription, plan, price, when, at) -> Subscription:
    at = _now(at)
    with transaction.atomic():
        subscription = _lock(subscription)
        _check_changeable(subscription)
        invoice = None
        if when == "next-cycle":
            subscription.pending_change = {
                "plan": str(plan.id),
                "price": str(price.id),
                "requested_at": at.isoformat().replace("+00:00", "Z"),
                "effective_at": subscription.valid_until.isoformat().replace("+00:00", "Z"),
            }
            _save(subscription, "pending_change")
        else:
            if price.currency != subscription.currency or price.schedule != subscription.schedule:
                raise ValidationError(
                    {
                        "price": [
                            "price must keep the subscription's currency and schedule in an "
                            "instant change; use when=next-cycle to change them"
                        ]
                    }
                )
            item = _plan_item(subscription)
            lines = []
            if subscription.status != Status.TRIAL_ACTIVE:
                lines = _proration_lines(
                    subscription,
                    item=item,
                    old_amount=item_fee(item.price, item.quantity),
                    new_amount=item_fee(price, item.quantity),
                    new_price=price,
                    at=at,
                    what=f"{subscription.plan.name} → {plan.name}"
                    if plan.pk != subscription.plan_id
                    else f"{plan.name} (new price)",
                )
            _switch(subscription, plan=plan, price=price, at=at, plan_item=item)
            subscription.pending_change = None
            _save(subscription, "plan", "price", "pending_change")
            invoice = _bill_change(subscription, lines)
        _emit(subscription, "subscription.updated")
    _charge_change_invoice(subscription, invoice)
    return _reread(subscription)


def _switch(subscription, *, plan, price, at, plan_item) -> None:
    """Point the subscription and its plan item at the new plan and price; when the plan changes,
    its metered items end at `at` and the new plan's start."""
    plan_changed = plan.pk != subscription.plan_id
    plan_item.price, plan_item.product = price, price.product
    plan_item.unit_price = Decimal(price.amount)
    plan_item.updated_at = timezone.now()
    plan_item.save(update_fields=["price", "product", "unit_price", "updated_at"])
    subscription.plan, subscription.price = plan, price
    if plan_changed:
        SubscriptionItem.objects.filter(
            subscription=subscription, item_type=ItemType.USAGE, active_to__isnull=True
        ).update(active_to=at)
        new_usage = [
            SubscriptionItem(
                tenant=subscription.tenant,
                subscription=subscription,
                item_type=ItemType.USAGE,
                product=usage_price.product,
                price=usage_price,
                unit_price=Decimal(usage_price.amount),
                metric=usage_price.metric,
                active_from=at,
            )
            for usage_price in _usage_prices(plan, price.currency, price.schedule)
        ]
        SubscriptionItem.objects.bulk_create(new_usage)


@transaction.atomic
def subscription_apply_pending_change(subscription: Subscription) -> Subscription:
    """The renewal engine's step before it bills the period that starts at `valid_until`: apply
    the stored next-cycle change. A new schedule re-anchors the subscription at the old period's
    end with `period_index = -1`, so `period_bounds(anchor, schedule, period_index + 1)` is the
    new schedule's first period. Returns the (locked, updated) subscription."""
    subscription = _lock(subscription)
    change = subscription.pending_change
    if not change:
        return subscription
    plan = SubscriptionPlan.objects.get(pk=change["plan"], tenant=subscription.tenant)
    price = Price.objects.select_related("product").get(
        pk=change["price"], tenant=subscription.tenant
    )
    at = subscription.valid_until
    _switch(subscription, plan=plan, price=price, at=at, plan_item=_plan_item(subscription))
    fields = ["plan", "price", "pending_change"]
    if price.schedule != subscription.schedule:
        subscription.anchor, subscription.period_index = at, -1
        subscription.schedule = price.schedule
        fields += ["anchor", "period_index", "schedule"]
    if price.currency != subscription.currency:
        subscription.currency = price.currency
        fields.append("currency")
    subscription.pending_change = None
    _save(subscription, *fields)
    _emit(subscription, "subscription.updated")
    return subscription


# --- Cancellation --------------------------------------------------------------------------------


def subscription_cancel(
    *,
    subscription: Subscription,
    when: str = "end-of-run",
    refund_type: str = "none",
    date: dt.date | None = None,
    comment: str | None = None,
    at: dt.datetime | None = None,
) -> Subscription:
    """Cancel at the end of the period, now, or on a date; refund none, all or the unused share of
    the last payment. The refund is a gateway call, made after the cancellation has committed.
    A subscription that ends now gets its final invoice of the last period's unbilled usage up to
    now (invoicing.engine.final_usage_invoices_issue), in the same transaction and after the
    refund is planned (so the refund is of the fixed fee's payment, as before), charged after the
    commit; one that ends later gets it from the billing engine when its `cancel_at` comes."""
    at = _now(at)
    final_charges = None
    with transaction.atomic():
        subscription = _lock(subscription)
        if subscription.status == Status.CANCELLED:
            raise Conflict("The subscription is already cancelled.")
        if when == "end-of-run":
            cancel_at = subscription.valid_until
        elif when == "instantly":
            cancel_at = at
        else:
            if date is None:
                raise ValidationError({"date": ["date is required when when is specific-date"]})
            cancel_at = dt.datetime.combine(date, dt.time.min, tzinfo=dt.UTC)
            if cancel_at <= at:
                raise ValidationError({"date": ["date must be in the future"]})
        subscription.cancel_at = cancel_at
        if comment:
            subscription.metadata = {**subscription.metadata, "cancellation_comment": comment}
        if cancel_at <= at:
            _end(subscription, at=cancel_at)
            _save(subscription, "status", "cancel_at", "ended_at", "metadata")
            _emit(subscription, "subscription.cancelled")
        else:
            _transition(subscription, Status.PENDING_CANCEL)
            _save(subscription, "status", "cancel_at", "metadata")
            _emit(subscription, "subscription.updated")
        refund = _refund_plan(subscription, refund_type=refund_type, effective_at=cancel_at)
        if subscription.status == Status.CANCELLED:
            final_charges = _engine().final_usage_invoices_issue(
                subscriptions=[subscription], at=at
            )
    if refund is not None:
        payment, amount = refund
        _invoicing().refund_create(
            payment=payment,
            amount=amount,
            reason=comment or f"Subscription cancelled ({refund_type} refund)",
        )
    if final_charges is not None:
        _engine().final_usage_invoices_charge(final_charges, at=at)
    return _reread(subscription)


def _engine():
    from invoicing import engine

    return engine


def _end(subscription: Subscription, *, at: dt.datetime) -> None:
    _transition(subscription, Status.CANCELLED)
    subscription.ended_at = at
    SubscriptionItem.objects.filter(
        Q(active_to__isnull=True) | Q(active_to__gt=at), subscription=subscription
    ).update(active_to=at)


def _last_payment(subscription: Subscription):
    from invoicing.models import Payment

    return (
        Payment.objects.filter(
            tenant=subscription.tenant,
            invoice__subscription=subscription,
            status__in=["completed", "partially_refunded"],
        )
        .order_by("-created_at", "-id")
        .first()
    )


def _refund_plan(subscription: Subscription, *, refund_type: str, effective_at: dt.datetime):
    """(payment, amount) to refund, or None. `prorate` refunds the share of the last payment that
    pays for the time after `effective_at` in the current period."""
    if refund_type == "none":
        return None
    payment = _last_payment(subscription)
    if payment is None:
        return None
    refundable = _invoicing().payment_refundable_amount(payment)
    if refund_type == "full":
        amount = refundable
    else:
        amount = billing_math.prorate(
            payment.amount,
            subscription.current_period_start,
            subscription.valid_until,
            effective_at,
            payment.currency,
        )
    amount = min(amount, refundable)
    return (payment, amount) if amount > 0 else None


@transaction.atomic
def subscription_apply_scheduled_cancellation(subscription: Subscription, at: dt.datetime):
    """The renewal engine's step for a subscription whose `cancel_at` has come: it ends at
    `cancel_at` and is not renewed."""
    subscription = _lock(subscription)
    if subscription.status == Status.CANCELLED or not subscription.cancel_at:
        return subscription
    if subscription.cancel_at > _now(at):
        return subscription
    _end(subscription, at=subscription.cancel_at)
    _save(subscription, "status", "ended_at")
    _emit(subscription, "subscription.cancelled")
    return subscription


# --- Other fields --------------------------------------------------------------------------------

SUBSCRIPTION_EDITABLE_FIELDS = frozenset(
    {"metadata", "main_external_reference", "child_external_reference"}
)


@transaction.atomic
def subscription_update(*, subscription: Subscription, **fields) -> Subscription:
    unknown = set(fields) - SUBSCRIPTION_EDITABLE_FIELDS
    if unknown:
        raise TypeError(f"Unknown subscription fields: {sorted(unknown)}")
    subscription = _lock(subscription)
    for name, value in fields.items():
        setattr(subscription, name, value)
    _save(subscription, *fields)
    _emit(subscription, "subscription.updated")
    return subscription


@transaction.atomic
def subscription_set_payment_method(*, subscription: Subscription, payment_method) -> Subscription:
    subscription = _lock(subscription)
    if payment_method.customer_id != subscription.customer_id:
        raise ValidationError({"payment_method": ["payment_method belongs to another customer"]})
    subscription.payment_method = payment_method
    _save(subscription, "payment_method")
    _emit(subscription, "subscription.updated")
    return subscription


# --- Checkouts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutSubscription:
    plan: SubscriptionPlan
    price: Price
    seat_number: int


def checkout_create(
    *,
    tenant,
    customer: Customer,
    items: list[dict],
    subscriptions: list[CheckoutSubscription],
    name: str = "",
    slug: str = "",
    brand: str = "default",
) -> Checkout:
    """Store a quote: every item and subscription price must be in one currency, the checkout's."""
    _check_customer(customer)
    if not items and not subscriptions:
        raise ValidationError({"items": ["a checkout needs at least one item or subscription"]})
    for index, wanted in enumerate(subscriptions):
        if wanted.plan.is_addon:
            raise ValidationError(
                {f"subscriptions.{index}.plan": ["plan must not be an add-on plan"]}
            )
        _resolve_price(plan=wanted.plan, price=wanted.price, currency=None, schedule=None)
    currencies = [item["currency"] for item in items] + [w.price.currency for w in subscriptions]
    if len(set(currencies)) > 1:
        raise ValidationError({"currency": ["all items and prices must be in one currency"]})
    try:
        with transaction.atomic():
            return Checkout.objects.create(
                tenant=tenant,
                customer=customer,
                name=name,
                slug=slug,
                brand=brand or "default",
                currency=currencies[0],
                items=items,
                subscriptions=[
                    {"plan": str(w.plan.pk), "price": str(w.price.pk), "seat_number": w.seat_number}
                    for w in subscriptions
                ],
            )
    except IntegrityError:
        raise ValidationError({"slug": ["slug is already used by another checkout"]}) from None


def _checkout_subscriptions(checkout: Checkout) -> list[CheckoutSubscription]:
    plans = SubscriptionPlan.objects.for_tenant(checkout.tenant).in_bulk(
        [wanted["plan"] for wanted in checkout.subscriptions]
    )
    prices = (
        Price.objects.for_tenant(checkout.tenant)
        .select_related("product")
        .in_bulk([wanted["price"] for wanted in checkout.subscriptions])
    )
    return [
        CheckoutSubscription(
            plan=plans[selectors.as_uuid(wanted["plan"])],
            price=prices[selectors.as_uuid(wanted["price"])],
            seat_number=wanted["seat_number"],
        )
        for wanted in checkout.subscriptions
    ]


def checkout_drafts(checkout: Checkout) -> list:
    """The lines of the checkout's invoice, before tax: its items, then the first period of each
    subscription, in advance."""
    LineDraft = _invoicing().LineDraft
    drafts = [
        LineDraft(
            description=item["description"],
            kind="one_off",
            amount=item["amount"],
            unit_price=Decimal(item["amount"]),
            tax_type=item.get("tax_type") or "standard",
            including_tax=bool(item.get("include_tax")),
        )
        for item in checkout.items
    ]
    for wanted in _checkout_subscriptions(checkout):
        drafts.append(
            _line(
                description=f"{wanted.plan.name} ({wanted.price.schedule}) x {wanted.seat_number}",
                kind="subscription",
                amount=item_fee(wanted.price, wanted.seat_number),
                price=wanted.price,
                quantity=wanted.seat_number,
            )
        )
    return drafts


def checkout_quote(checkout: Checkout, *, at: dt.datetime | None = None):
    """The checkout priced as its invoice would be (taxed lines and totals), not saved."""
    invoicing = _invoicing()
    return invoicing.InvoiceAssembler(checkout.tenant, _now(at)).assemble(
        customer=checkout.customer,
        currency=checkout.currency,
        drafts=checkout_drafts(checkout),
        billing_reason="checkout",
    )


@dataclass(frozen=True)
class CheckoutPaid:
    checkout: Checkout
    invoice: object
    payment: object
    subscriptions: list[Subscription]


def checkout_pay(
    *,
    checkout: Checkout,
    card_token: str | None = None,
    payment_method=None,
    at: dt.datetime | None = None,
) -> CheckoutPaid:
    """Issue the checkout's invoice, start its subscriptions (their first period is on that
    invoice) and charge it. The charge runs after the commit; when it fails the invoice is
    voided, the subscriptions are cancelled and the checkout can be paid again (402)."""
    at = _now(at)
    customer = checkout.customer
    method = _resolve_payment_method(
        customer=customer, payment_method=payment_method, card_token=card_token
    )
    if method is None:
        raise ValidationError(
            {"payment_method": ["payment_method or card_token is required to pay a checkout"]}
        )
    with transaction.atomic():
        locked = Checkout.objects.select_for_update().get(pk=checkout.pk)
        if locked.status != Checkout.Status.OPEN:
            raise Conflict(f"The checkout is {locked.status} already.")
        started = []
        for wanted in _checkout_subscriptions(locked):
            _, end = billing_math.period_bounds(at, wanted.price.schedule, 0)
            started.append(
                _subscription_create(
                    customer=customer,
                    plan=wanted.plan,
                    price=wanted.price,
                    seat_number=wanted.seat_number,
                    status=Status.ACTIVE,
                    started_at=at,
                    first_period_end=end,
                    metadata={"checkout": str(locked.pk)},
                    payment_method=method,
                )
            )
        invoice = _invoicing().invoice_issue(
            customer=customer,
            currency=locked.currency,
            lines=checkout_drafts(locked),
            billing_reason="checkout",
            at=at,
        )
        locked.status, locked.invoice = Checkout.Status.PAYING, invoice
        locked.save(update_fields=["status", "invoice"])
    result = (
        _invoicing().invoice_charge(invoice=invoice, payment_method=method, at=at)
        if _needs_charge(invoice)
        else None
    )
    with transaction.atomic():
        locked = Checkout.objects.select_for_update().get(pk=checkout.pk)
        if result is not None and not result.paid:
            for subscription in started:
                _cancel_unpaid_start(subscription, failure_reason=result.failure_reason)
            _invoicing().invoice_void(
                invoice=invoice, reason=f"Checkout payment failed: {result.failure_reason}"
            )
            locked.status, locked.invoice = Checkout.Status.OPEN, None
            locked.save(update_fields=["status", "invoice"])
            failure = result.failure_reason
        else:
            locked.status, locked.paid_at = Checkout.Status.PAID, at
            locked.save(update_fields=["status", "paid_at"])
            failure = None
    if failure is not None:
        raise PaymentRequired(
            "The payment failed; the checkout was not paid.", extra={"failure_reason": failure}
        )
    invoice.refresh_from_db()
    for subscription in started:
        _reread(subscription)
    return CheckoutPaid(
        checkout=locked,
        invoice=invoice,
        payment=result.payment if result is not None else None,
        subscriptions=started,
    )
