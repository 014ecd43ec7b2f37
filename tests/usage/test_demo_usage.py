import pytest

from billing_project.demo import seed_demo
from customers.models import Customer
from usage.models import UsageEvent
from usage.selectors import customer_cost_estimate

pytestmark = pytest.mark.django_db


def test_seed_demo_gives_ada_a_month_of_metered_usage_and_a_cost_estimate():
    tenant, _ = seed_demo()
    ada = Customer.objects.for_tenant(tenant).get(reference="cust-ada")
    assert UsageEvent.objects.for_tenant(tenant).filter(code="api_calls").count() > 20_000
    estimate = customer_cost_estimate(customer=ada)
    codes = {cost.metric.code: cost for cost in estimate.costs}
    assert set(codes) == {"api_calls", "storage_gb"}
    assert codes["api_calls"].usage > 20_000
    assert codes["api_calls"].amount == int(codes["api_calls"].usage)  # 1 cent a call
    assert codes["storage_gb"].amount > 0
    seed_demo()  # topping up adds no usage twice
    assert UsageEvent.objects.for_tenant(tenant).filter(code="storage_gb").count() == 120
