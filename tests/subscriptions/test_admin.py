import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from subscriptions.models import Subscription
from tenants.models import TenantMembership
from tests.factories import CustomerFactory
from tests.subscriptions.factories import make_plan

pytestmark = pytest.mark.django_db

MODELS = [
    "product",
    "price",
    "metric",
    "feature",
    "subscriptionplan",
    "voucher",
    "voucherredemption",
    "subscription",
    "subscriptionitem",
]


@pytest.fixture
def staff_client(client, tenant):
    user = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    TenantMembership.objects.create(user=user, tenant=tenant)
    client.force_login(user)
    return client


def test_staff_find_plans_and_subscriptions_of_their_tenant_only(
    staff_client, tenant, other_tenant, clock
):
    from subscriptions import services

    plan, _ = make_plan(tenant, code_name="team")
    other_plan, _ = make_plan(other_tenant, code_name="hidden")
    customer = CustomerFactory(tenant=tenant, billing_type="invoice")
    subscription = services.subscription_start(customer=customer, plan=plan)

    for model in MODELS:
        url = reverse(f"admin:subscriptions_{model}_changelist")
        assert staff_client.get(url).status_code == 200, model
    found = staff_client.get(reverse("admin:subscriptions_subscriptionplan_changelist"), {"q": "e"})
    assert [p.code_name for p in found.context["cl"].queryset] == ["team"]
    page = staff_client.get(reverse("admin:subscriptions_subscriptionplan_change", args=[plan.pk]))
    assert page.status_code == 200
    hidden = reverse("admin:subscriptions_subscriptionplan_change", args=[other_plan.pk])
    assert staff_client.get(hidden).status_code == 302  # not found for this staff member
    detail = reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
    assert staff_client.get(detail).status_code == 200

    staff_client.post(
        reverse("admin:subscriptions_subscription_changelist"),
        {"action": "cancel_now", "_selected_action": [str(subscription.pk)]},
    )
    assert Subscription.objects.get(pk=subscription.pk).status == "cancelled"
