import datetime as dt

import pytest
import time_machine

from quotas import services
from subscriptions.models import Feature, PlanLimit
from tests.usage.factories import make_customer, make_metric, make_subscription

UTC = dt.UTC
# Billing periods start at 10:30, so quota periods (whole hours) start at 10:00.
ANCHOR = dt.datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
NOW = ANCHOR + dt.timedelta(days=10)


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def customer(tenant):
    return make_customer(tenant, email="ns@example.com", reference="cust-ns")


@pytest.fixture
def namespace(customer):
    return customer.default_namespace


@pytest.fixture
def subscription(customer, clock):
    return make_subscription(customer, anchor=ANCHOR)


@pytest.fixture
def calls(tenant):
    return make_metric(tenant, "api_calls", "sum", name="API calls")


@pytest.fixture
def vms(tenant):
    return make_metric(tenant, "vms", "latest", name="Virtual machines")


def plan_limit(plan, code: str, limit: int) -> PlanLimit:
    feature, _ = Feature.objects.get_or_create(
        tenant=plan.tenant, code=code, defaults={"name": code.title()}
    )
    return PlanLimit.objects.create(tenant=plan.tenant, plan=plan, feature=feature, limit=limit)


def quota(namespace, name="default", *, disable=False, **spec):
    full = {"object_limits": {}, "resource_limits": {}, "api_limits": {}}
    full.update(spec)
    return services.quota_create(namespace=namespace, name=name, spec=full, disable=disable)
