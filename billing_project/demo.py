"""The demo tenant that `make run` starts with: each section seeds one app's part of the story.
It goes through the same services as the API, so the demo data is what an integrator would make."""

from customers.models import Customer
from customers.services import customer_create
from tenants.models import Tenant
from tenants.services import api_key_create, tenant_create

DEMO_SLUG = "demo"

DEMO_CUSTOMERS = [
    {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "reference": "cust-ada",
        "country": "GB",
        "city": "London",
        "billing_type": Customer.BillingType.CARD,
    },
    {
        "email": "billing@acme.example",
        "name": "Acme GmbH",
        "company_name": "Acme GmbH",
        "type": Customer.Type.BUSINESS,
        "tax_number": "DE123456789",
        "reference": "cust-acme",
        "country": "DE",
        "city": "Berlin",
        "street_line_one": "Unter den Linden 1",
        "postcode": "10117",
        "billing_type": Customer.BillingType.INVOICE,
    },
    {
        "email": "kenji@example.jp",
        "name": "Kenji Sato",
        "reference": "cust-kenji",
        "country": "JP",
        "currency": "JPY",
        "billing_type": Customer.BillingType.CARD,
    },
]


def seed_tenant() -> Tenant:
    tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
    if tenant is None:
        tenant = tenant_create(
            slug=DEMO_SLUG,
            name="Demo Cloud Ltd",
            currency="EUR",
            country="DE",
            timezone_name="Europe/Berlin",
        )
        tenant.street_line_one, tenant.city, tenant.postcode = "Friedrichstr. 68", "Berlin", "10117"
        tenant.tax_number, tenant.dunning_retry_days = "DE999999999", [1, 3, 5]
        tenant.save()
    return tenant


def seed_customers(tenant: Tenant) -> list[Customer]:
    customers = []
    for fields in DEMO_CUSTOMERS:
        existing = Customer.objects.for_tenant(tenant).filter(email=fields["email"]).first()
        customers.append(existing or customer_create(tenant=tenant, **fields))
    return customers


def seed_catalog(tenant: Tenant) -> None:
    """A cloud product sold per seat (monthly or yearly, EUR; monthly JPY), a metered API price,
    features with limits, and an extra-storage add-on."""
    from subscriptions.models import Price, SubscriptionPlan
    from subscriptions.services import (
        feature_create,
        metric_create,
        plan_save,
        price_create,
        product_create,
    )

    if SubscriptionPlan.objects.for_tenant(tenant).filter(code_name="team").exists():
        return
    platform = product_create(tenant=tenant, name="Cloud Platform", tax_type="digital")
    monthly = price_create(
        tenant=tenant, product=platform, amount=1900, currency="EUR", schedule="month"
    )
    yearly = price_create(
        tenant=tenant, product=platform, amount=19000, currency="EUR", schedule="year"
    )
    monthly_jpy = price_create(
        tenant=tenant, product=platform, amount=2500, currency="JPY", schedule="month"
    )
    api_calls = metric_create(
        tenant=tenant, name="API calls", code="api_calls", aggregation_method="count"
    )
    metered = price_create(
        tenant=tenant,
        product=platform,
        amount=1,
        currency="EUR",
        schedule="month",
        type=Price.Type.PER_UNIT,
        usage=True,
        metric=api_calls,
    )
    sso = feature_create(tenant=tenant, code="sso", name="Single sign-on")
    storage = feature_create(tenant=tenant, code="storage_gb", name="Storage (GB)")
    calls = feature_create(tenant=tenant, code="api_calls", name="API calls per period")
    plan_save(
        tenant=tenant,
        name="Team",
        code_name="team",
        product=platform,
        per_seat=True,
        has_trial=True,
        trial_length_days=14,
        features=[sso, storage, calls],
        limits=[(storage, 100), (calls, 100_000)],
        prices=[monthly, yearly, monthly_jpy, metered],
    )
    extra = product_create(tenant=tenant, name="Extra storage", tax_type="digital")
    extra_monthly = price_create(
        tenant=tenant, product=extra, amount=500, currency="EUR", schedule="month"
    )
    plan_save(
        tenant=tenant,
        name="Extra storage",
        code_name="extra-storage",
        product=extra,
        is_addon=True,
        user_count=0,
        features=[storage],
        limits=[(storage, 50)],
        prices=[extra_monthly],
    )


def seed_subscriptions(tenant: Tenant) -> None:
    """Ada pays 3 seats by card, Acme 10 seats by invoice with the storage add-on, Kenji tries."""
    from subscriptions import services
    from subscriptions.models import Subscription, SubscriptionPlan

    team = SubscriptionPlan.objects.for_tenant(tenant).get(code_name="team")
    extra = SubscriptionPlan.objects.for_tenant(tenant).get(code_name="extra-storage")
    customers = {c.reference: c for c in Customer.objects.for_tenant(tenant)}
    subscribed = set(
        Subscription.objects.for_tenant(tenant).values_list("customer__reference", flat=True)
    )
    if "cust-ada" in customers and "cust-ada" not in subscribed:
        services.subscription_start(
            customer=customers["cust-ada"],
            plan=team,
            currency="EUR",
            schedule="month",
            seat_number=3,
            card_token="tok_visa",
            deny_trial=True,
        )
    if "cust-acme" in customers and "cust-acme" not in subscribed:
        acme = services.subscription_start(
            customer=customers["cust-acme"],
            plan=team,
            currency="EUR",
            schedule="year",
            seat_number=10,
            deny_trial=True,
        )
        services.subscription_item_add(
            subscription=acme,
            item_type="addon",
            price=_yearly_addon_price(tenant, extra),
            quantity=2,
        )
    if "cust-kenji" in customers and "cust-kenji" not in subscribed:
        services.subscription_start_trial(
            customer=customers["cust-kenji"], plan=team, currency="JPY", seat_number=1
        )


def _yearly_addon_price(tenant: Tenant, addon_plan):
    from subscriptions.services import price_create

    price = addon_plan.prices.filter(currency="EUR", schedule="year").first()
    if price is None:
        price = price_create(
            tenant=tenant, product=addon_plan.product, amount=5000, currency="EUR", schedule="year"
        )
        addon_plan.prices.add(price)
    return price


def seed_usage(tenant: Tenant) -> None:
    """Metered usage for `make run`'s cost estimates: Ada's subscription also bills storage by
    seed-002 steps, and a month of API calls and storage readings arrives through the batch
    ingestion path (1,000 events a statement)."""
    import datetime as dt
    import random

    from django.utils import timezone

    from subscriptions import services as subscription_services
    from subscriptions.models import Metric, Price, Subscription
    from usage.models import UsageEvent
    from usage.services import events_ingest

    if UsageEvent.objects.for_tenant(tenant).exists():
        return
    ada = (
        Subscription.objects.for_tenant(tenant)
        .filter(customer__reference="cust-ada", status="active")
        .select_related("customer", "price__product")
        .first()
    )
    if ada is None:
        return
    storage, _ = Metric.objects.get_or_create(
        tenant=tenant,
        code="storage_gb",
        defaults={"name": "Storage", "aggregation_method": "max", "unit_name": "GB"},
    )
    storage_price = subscription_services.price_create(
        tenant=tenant,
        product=ada.price.product,
        amount=0,
        currency="EUR",
        schedule="month",
        type=Price.Type.PER_UNIT,
        usage=True,
        metric=storage,
    )
    item = subscription_services.subscription_item_add(
        subscription=ada, item_type="usage", price=storage_price
    )
    subscription_services.subscription_item_update(
        item=item,
        calc_rule_type="stepped",
        pricing={
            "steps": [
                {"threshold": "0", "money_value": "0"},
                {"threshold": "10", "money_value": "12.5"},
                {"threshold": "100", "money_value": "8"},
            ]
        },
        description="Storage (first 10 GB free)",
    )
    rng = random.Random(42)
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    # Ada's usage of the month before her subscription started counts (as late, unbilled usage)
    # toward her first renewal, so that the demo's cost estimate has something to show.
    for metered in ada.items.filter(item_type="usage"):
        subscription_services.subscription_item_update(
            item=metered, active_from=now - dt.timedelta(days=31)
        )
    events = []
    for hour in range(30 * 24, 0, -1):
        at = now - dt.timedelta(hours=hour)
        for n in range(rng.randint(20, 60)):
            events.append(
                {
                    "event_id": f"demo-calls-{hour}-{n}",
                    "customer": "cust-ada",
                    "code": "api_calls",
                    "timestamp": (at + dt.timedelta(seconds=n * 37)).isoformat(),
                    "properties": {
                        "endpoint": rng.choice(["/v1/files", "/v1/search", "/v1/users"])
                    },
                }
            )
        if hour % 6 == 0:
            events.append(
                {
                    "event_id": f"demo-storage-{hour}",
                    "customer": "cust-ada",
                    "code": "storage_gb",
                    "value": round(20 + (30 * 24 - hour) / 24 + rng.random() * 3, 2),
                    "timestamp": at.isoformat(),
                }
            )
    for start in range(0, len(events), 1000):
        events_ingest(tenant=tenant, events=events[start : start + 1000], batch=True)


SECTIONS = [seed_customers, seed_catalog, seed_subscriptions, seed_usage]


def seed_demo() -> tuple[Tenant, str]:
    """Seed (or top up) the demo tenant; returns it with a fresh clear API key."""
    tenant = seed_tenant()
    for section in SECTIONS:
        section(tenant)
    issued = api_key_create(tenant=tenant, name="demo")
    return tenant, issued.clear_key
