"""A plan transition travels from the API through Redis to a real Celery worker."""

from invoicing.engine import billing_run
from invoicing.models import Invoice
from quotas.models import PlanTransition
from subscriptions import services as subscription_services
from subscriptions.models import Subscription
from tests.factories import CustomerFactory
from tests.integration.conftest import celery_worker, integration, wait_until  # noqa: F401
from tests.subscriptions.factories import make_plan

pytestmark = integration


def test_a_worker_runs_a_plan_transition_to_finished(celery_worker, api, tenant):  # noqa: F811
    basic, _ = make_plan(tenant, amount=1000, code_name="basic")
    make_plan(tenant, amount=2000, code_name="bigger")
    customer = CustomerFactory(tenant=tenant, email="worker@example.com", billing_type="invoice")
    subscription = subscription_services.subscription_start(customer=customer, plan=basic)

    response = api.post(
        f"/api/v1/namespaces/{customer.default_namespace.name}/billing/plan_transition",
        {"new_plan": "bigger"},
        format="json",
    )
    assert response.status_code == 202, response.content
    transition_id = response.json()["id"]
    wait_until(
        lambda: PlanTransition.objects.filter(
            pk=transition_id, state=PlanTransition.State.FINISHED
        ).exists(),
        timeout=60,
    )
    subscription = Subscription.objects.get(pk=subscription.pk)
    assert subscription.plan.code_name == "bigger"

    billing_run(at=subscription.valid_until)
    renewal = Invoice.objects.get(subscription=subscription, billing_reason="renewal")
    prorations = list(renewal.lines.filter(kind="proration").values_list("sub_total", flat=True))
    assert len(prorations) == 2
    assert sum(prorations) > 0  # the credit of the old fee is smaller than the new fee's charge
