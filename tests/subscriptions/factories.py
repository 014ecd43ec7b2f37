"""Catalog factories for subscription tests. Subscriptions themselves are started through the
API or the services in the tests, so the lifecycle under test is the one integrators use."""

import factory
from factory.django import DjangoModelFactory

from subscriptions.models import Feature, Metric, Price, Product, SubscriptionPlan, Voucher
from tests.factories import TenantFactory


class ProductFactory(DjangoModelFactory):
    class Meta:
        model = Product

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Product {n}")


class MetricFactory(DjangoModelFactory):
    class Meta:
        model = Metric

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Metric {n}")
    code = factory.Sequence(lambda n: f"metric_{n}")
    aggregation_method = Metric.AggregationMethod.SUM


class PriceFactory(DjangoModelFactory):
    class Meta:
        model = Price

    tenant = factory.SubFactory(TenantFactory)
    product = factory.SubFactory(ProductFactory, tenant=factory.SelfAttribute("..tenant"))
    amount = 1000
    currency = "EUR"
    recurring = True
    schedule = "month"
    type = Price.Type.FIXED_PRICE


class FeatureFactory(DjangoModelFactory):
    class Meta:
        model = Feature

    tenant = factory.SubFactory(TenantFactory)
    code = factory.Sequence(lambda n: f"feature_{n}")
    name = factory.Sequence(lambda n: f"Feature {n}")


class PlanFactory(DjangoModelFactory):
    class Meta:
        model = SubscriptionPlan
        skip_postgeneration_save = True

    tenant = factory.SubFactory(TenantFactory)
    product = factory.SubFactory(ProductFactory, tenant=factory.SelfAttribute("..tenant"))
    name = factory.Sequence(lambda n: f"Plan {n}")
    code_name = factory.Sequence(lambda n: f"plan-{n}")

    @factory.post_generation
    def prices(self, create, extracted, **kwargs):
        if create and extracted:
            self.prices.add(*extracted)


class VoucherFactory(DjangoModelFactory):
    class Meta:
        model = Voucher

    tenant = factory.SubFactory(TenantFactory)
    code = factory.Sequence(lambda n: f"VOUCH{n}")
    type = Voucher.Type.PERCENTAGE
    percentage = 10


def make_plan(tenant, *, amount=1000, currency="EUR", schedule="month", **plan_fields):
    """A plan with one recurring fixed price on its own product; returns (plan, price)."""
    product = ProductFactory(tenant=tenant)
    price = PriceFactory(
        tenant=tenant, product=product, amount=amount, currency=currency, schedule=schedule
    )
    plan = PlanFactory(tenant=tenant, product=product, prices=[price], **plan_fields)
    return plan, price


def make_usage_price(tenant, plan, *, currency="EUR", unit_price="0.5"):
    metric = MetricFactory(tenant=tenant)
    price = PriceFactory(
        tenant=tenant,
        product=plan.product,
        amount=0,
        currency=currency,
        type=Price.Type.PER_UNIT,
        usage=True,
        metric=metric,
    )
    plan.prices.add(price)
    return price
