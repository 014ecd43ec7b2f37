"""Factories for the foundation models; other apps add theirs in tests/<app>/factories.py."""

import factory
from factory.django import DjangoModelFactory

from customers.models import Customer
from customers.services import customer_create
from tenants.models import Tenant
from tenants.services import api_key_create


class TenantFactory(DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    currency = "EUR"
    country = "DE"
    timezone = "Europe/Berlin"


class CustomerFactory(factory.Factory):
    """Customers are made through the service, so each gets its default namespace as in the API."""

    class Meta:
        model = Customer

    tenant = factory.SubFactory(TenantFactory)
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    name = factory.Faker("name")
    country = "DE"

    @classmethod
    def _create(cls, model_class, *args, tenant, **kwargs):
        return customer_create(tenant=tenant, **kwargs)

    @classmethod
    def _build(cls, model_class, *args, **kwargs):
        return model_class(*args, **kwargs)


def make_api_key(tenant, **kwargs) -> str:
    return api_key_create(tenant=tenant, **kwargs).clear_key
