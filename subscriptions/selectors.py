"""Reads for the catalog and subscriptions: looking up plans and prices by what integrators send,
the priced item a quantity request means, and a customer's entitlements (limits)."""

import uuid

from django.db.models import Prefetch, Q, QuerySet

from subscriptions.models import (
    Feature,
    PlanLimit,
    Price,
    Subscription,
    SubscriptionItem,
    SubscriptionPlan,
)

# Subscriptions whose plan the customer is entitled to use right now.
ENTITLED_STATUSES = frozenset(
    {
        Subscription.Status.TRIAL_ACTIVE,
        Subscription.Status.ACTIVE,
        Subscription.Status.PENDING_CANCEL,
        Subscription.Status.OVERDUE_PAYMENT_OPEN,
    }
)


def as_uuid(value) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


def by_id_or_code(queryset: QuerySet, reference, *, code_field: str):
    """The row of `queryset` whose id, else whose `code_field`, is `reference` (the API takes
    plans and features by either)."""
    row_id = as_uuid(reference)
    row = queryset.filter(pk=row_id).first() if row_id is not None else None
    return row or queryset.filter(**{code_field: str(reference)}).first()


def plan_by_reference(*, tenant, reference) -> SubscriptionPlan | None:
    """A plan by its id or its code_name."""
    return by_id_or_code(
        SubscriptionPlan.objects.for_tenant(tenant), reference, code_field="code_name"
    )


def price_by_id(*, tenant, price_id) -> Price | None:
    price_id = as_uuid(price_id)
    if price_id is None:
        return None
    return Price.objects.for_tenant(tenant).select_related("product").filter(pk=price_id).first()


def plan_default_price(
    *, plan: SubscriptionPlan, currency: str | None, schedule: str | None
) -> Price | None:
    """The plan's recurring fixed price for `currency` and `schedule`; without a schedule, monthly
    is preferred, then yearly, then weekly."""
    prices = plan.prices.filter(usage=False, recurring=True)
    if currency:
        prices = prices.filter(currency=currency)
    if schedule:
        return prices.filter(schedule=schedule).order_by("id").first()
    by_preference = {"month": 0, "year": 1, "week": 2}
    return min(prices.order_by("id"), key=lambda p: by_preference.get(p.schedule, 3), default=None)


def customer_subscriptions(*, customer) -> QuerySet[Subscription]:
    return Subscription.objects.for_tenant(customer.tenant).filter(customer=customer)


def subscriptions_with_relations(queryset: QuerySet[Subscription]) -> QuerySet[Subscription]:
    return queryset.select_related("plan", "price", "customer")


def quantity_item(*, customer, product_reference: str) -> SubscriptionItem | None:
    """The customer's live plan or add-on item that seed 000's `{product_id}` names: a product id,
    the code_name of a plan, or the id of an add-on product. The newest match wins."""
    items = (
        SubscriptionItem.objects.for_tenant(customer.tenant)
        .filter(
            subscription__customer=customer,
            subscription__status__in=ENTITLED_STATUSES,
            item_type__in=[SubscriptionItem.ItemType.PLAN, SubscriptionItem.ItemType.ADDON],
            active_to__isnull=True,
        )
        .select_related("subscription", "subscription__plan", "price", "product")
    )
    product_id = as_uuid(product_reference)
    if product_id is not None:
        match = Q(product_id=product_id) | Q(price_id=product_id)
    else:
        match = Q(
            item_type=SubscriptionItem.ItemType.PLAN,
            subscription__plan__code_name=product_reference,
        )
    return items.filter(match).order_by("-id").first()


def customer_limits(*, customer) -> dict:
    """The customer's entitlements from its entitled subscriptions: limits per feature (summed when
    several plans, e.g. a plan and its add-ons, grant the same feature), the union of features,
    and the number of users (seats for per-seat plans)."""
    subscriptions = list(
        customer_subscriptions(customer=customer)
        .filter(status__in=ENTITLED_STATUSES)
        .select_related("plan")
        .prefetch_related(
            Prefetch(
                "plan__limits",
                queryset=PlanLimit.objects.select_related("feature").order_by("feature__code"),
            ),
            Prefetch("plan__features", queryset=Feature.objects.order_by("code")),
        )
    )
    limits: dict[str, dict] = {}
    features: dict[str, Feature] = {}
    user_count = 0
    for subscription in subscriptions:
        plan = subscription.plan
        user_count += subscription.seat_number if plan.per_seat else plan.user_count
        for feature in plan.features.all():
            features[feature.code] = feature
        for plan_limit in plan.limits.all():
            feature = plan_limit.feature
            entry = limits.setdefault(
                feature.code,
                {"feature": {"code": feature.code, "name": feature.name}, "limit": 0},
            )
            entry["limit"] += plan_limit.limit
    return {
        "limits": [limits[code] for code in sorted(limits)],
        "features": [
            {
                "id": str(feature.id),
                "code": feature.code,
                "name": feature.name,
                "description": feature.description,
            }
            for _, feature in sorted(features.items())
        ],
        "user_count": user_count,
    }
