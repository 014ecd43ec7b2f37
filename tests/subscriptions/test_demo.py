import pytest

from billing_project.demo import seed_demo
from subscriptions.models import Subscription

pytestmark = pytest.mark.django_db


def test_seed_demo_subscribes_the_demo_customers_once():
    tenant, _ = seed_demo()
    statuses = dict(
        Subscription.objects.for_tenant(tenant).values_list("customer__reference", "status")
    )
    assert statuses == {
        "cust-ada": "active",
        "cust-acme": "active",
        "cust-kenji": "trial_active",
    }
    seed_demo()
    assert Subscription.objects.for_tenant(tenant).count() == 3
