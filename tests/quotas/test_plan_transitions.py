"""Plan transitions: requested over the API, run by a worker (eagerly here; a real one in
tests/quotas/test_integration.py), optionally after staff approval in the admin."""

import uuid

import pytest
import time_machine
from django.contrib.auth import get_user_model

from invoicing.engine import billing_run
from invoicing.models import Invoice, InvoiceLine
from quotas.models import PlanTransition
from subscriptions import services as subscription_services
from subscriptions.models import Subscription, SubscriptionItem
from tests.factories import CustomerFactory
from tests.openapi import assert_error_body, assert_matches_schema
from tests.subscriptions.conftest import MID, START
from tests.subscriptions.factories import make_plan
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

State = PlanTransition.State


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def plans(tenant):
    basic, _ = make_plan(tenant, amount=1000, code_name="basic")
    bigger, _ = make_plan(tenant, amount=2000, code_name="bigger")
    gated, _ = make_plan(tenant, amount=5000, code_name="enterprise", requires_manual_approval=True)
    addon, _ = make_plan(tenant, amount=300, code_name="backup", is_addon=True)
    return basic, bigger, gated, addon


@pytest.fixture
def started(tenant, clock, plans):
    customer = CustomerFactory(tenant=tenant, email="pt@example.com", billing_type="invoice")
    subscription = subscription_services.subscription_start(customer=customer, plan=plans[0])
    clock.move_to(MID)
    return subscription


def _request(api, namespace, new_plan, **payload):
    return api.post(
        f"/api/v1/namespaces/{namespace.name}/billing/plan_transition",
        {"new_plan": new_plan, "payload": payload},
        format="json",
    )


def pending(subscription):
    return list(
        InvoiceLine.objects.filter(subscription=subscription, invoice__isnull=True)
        .order_by("created_at", "id")
        .values_list("kind", "sub_total")
    )


def test_a_transition_moves_the_subscription_prorated_and_applies_add_ons(
    api, started, django_capture_on_commit_callbacks
):
    namespace = started.customer.default_namespace
    with django_capture_on_commit_callbacks(execute=True):
        response = _request(api, namespace, "bigger", subscribe_addon_services=["backup"])
    assert response.status_code == 202, response.content
    assert_matches_schema(response, "post", "/api/v1/namespaces/{ns}/billing/plan_transition")
    assert response.json()["requires_manual_approval"] is False

    record = api.get(f"/api/v1/plan_transitions/{response.json()['id']}")
    assert_matches_schema(record, "get", "/api/v1/plan_transitions/{transition_id}")
    body = record.json()
    assert body["state"] == "STATE_FINISHED", body
    assert body["from_plan"]["code_name"] == "basic"
    assert body["to_plan"]["code_name"] == "bigger"
    assert body["failure_reason"] is None
    assert body["subscribe_addon_services"] == ["backup"]

    started.refresh_from_db()
    assert started.plan.code_name == "bigger"
    # 1000 and 2000 prorated over 16 of 31 days; the add-on's 300 for the rest of the period.
    assert pending(started) == [("proration", -516), ("proration", 1032), ("proration", 155)]
    assert SubscriptionItem.objects.filter(subscription=started, item_type="addon").count() == 1
    assert WebhookEvent.objects.filter(type="plan_transition.finished").count() == 1

    billing_run(at=started.valid_until)
    renewal = Invoice.objects.get(subscription=started, billing_reason="renewal")
    kinds = sorted(renewal.lines.values_list("kind", "sub_total"))
    assert ("proration", 1032) in kinds and ("proration", -516) in kinds
    assert ("subscription", 2000) in kinds and ("subscription", 300) in kinds


def test_an_approval_gated_transition_waits_until_staff_approve_it(
    api, anonymous_api, started, tenant, client, django_capture_on_commit_callbacks
):
    namespace = started.customer.default_namespace
    with django_capture_on_commit_callbacks(execute=True):
        response = _request(api, namespace, "enterprise")
    assert response.status_code == 202
    assert response.json()["requires_manual_approval"] is True
    transition_id = response.json()["id"]

    state = anonymous_api.get(f"/api/v1/no_auth/plan_transition?id={transition_id}")
    assert state.status_code == 200
    assert_matches_schema(state, "get", "/api/v1/no_auth/plan_transition")
    assert state.json() == {"state": "STATE_WAITING_FOR_APPROVAL"}
    started.refresh_from_db()
    assert started.plan.code_name == "basic"

    staff = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/admin/quotas/plantransition/",
            {"action": "approve", "_selected_action": [transition_id]},
        )
    assert answer.status_code == 302
    transition = PlanTransition.objects.get(pk=transition_id)
    assert transition.state == State.FINISHED
    assert transition.approved_by == staff
    started.refresh_from_db()
    assert started.plan.code_name == "enterprise"
    assert anonymous_api.get(f"/api/v1/no_auth/plan_transition?id={transition_id}").json() == {
        "state": "STATE_FINISHED"
    }


def test_staff_can_reject_a_gated_transition(api, started, django_capture_on_commit_callbacks):
    from quotas import services

    transition_id = _request(api, started.customer.default_namespace, "enterprise").json()["id"]
    services.plan_transition_reject(transition=PlanTransition.objects.get(pk=transition_id))
    transition = PlanTransition.objects.get(pk=transition_id)
    assert transition.state == State.FAILED
    assert transition.failure_reason == "rejected by staff"
    assert WebhookEvent.objects.filter(type="plan_transition.failed").count() == 1


def test_a_transition_that_cannot_be_applied_fails_with_its_reason(
    api, tenant, started, django_capture_on_commit_callbacks
):
    make_plan(tenant, amount=1000, currency="USD", code_name="dollars")
    with django_capture_on_commit_callbacks(execute=True):
        response = _request(api, started.customer.default_namespace, "dollars")
    body = api.get(f"/api/v1/plan_transitions/{response.json()['id']}").json()
    assert body["state"] == "STATE_FAILED"
    assert "price" in body["failure_reason"]
    started.refresh_from_db()
    assert started.plan.code_name == "basic"
    assert WebhookEvent.objects.filter(type="plan_transition.failed").count() == 1


def test_a_transition_run_twice_changes_nothing_twice(
    api, started, django_capture_on_commit_callbacks
):
    from quotas import services

    with django_capture_on_commit_callbacks(execute=True):
        transition_id = _request(api, started.customer.default_namespace, "bigger").json()["id"]
    services.plan_transition_execute(transition_id=transition_id)
    assert len(pending(started)) == 2


def test_bad_requests(api, anonymous_api, started, other_api):
    namespace = started.customer.default_namespace
    assert_error_body(_request(api, namespace, "nope"), 400, errors=True)
    assert_error_body(_request(api, namespace, "backup"), 400, errors=True)
    assert_error_body(
        _request(api, namespace, "bigger", subscribe_addon_services=["bigger"]), 400, errors=True
    )
    assert_error_body(_request(other_api, namespace, "bigger"), 404)
    for query in ("", "?id=not-a-uuid", f"?id={uuid.uuid4()}"):
        assert_error_body(anonymous_api.get(f"/api/v1/no_auth/plan_transition{query}"), 404)
    transition_id = _request(api, namespace, "enterprise").json()["id"]
    assert_error_body(other_api.get(f"/api/v1/plan_transitions/{transition_id}"), 404)
    assert_error_body(anonymous_api.get(f"/api/v1/plan_transitions/{transition_id}"), 403)


def test_a_customer_without_a_subscription_starts_one(
    api, tenant, plans, clock, django_capture_on_commit_callbacks
):
    customer = CustomerFactory(tenant=tenant, email="new@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        response = _request(
            api, customer.default_namespace, "basic", payment_provider_token="tok_visa"
        )
    transition = PlanTransition.objects.get(pk=response.json()["id"])
    assert transition.state == State.FINISHED, transition.failure_reason
    assert "payment_provider_token" not in transition.payload
    subscription = Subscription.objects.get(customer=customer)
    assert subscription.plan.code_name == "basic" and subscription.status == "active"
    assert Invoice.objects.get(subscription=subscription).status == "paid"
    assert subscription.current_period_start == START
