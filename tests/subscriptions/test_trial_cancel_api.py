import datetime as dt

import pytest

from invoicing.models import Invoice, Refund
from subscriptions import services
from subscriptions.models import Subscription
from tests.openapi import assert_matches_schema
from tests.subscriptions.conftest import MID, START
from tests.subscriptions.factories import make_plan

pytestmark = pytest.mark.django_db
UTC = dt.UTC


@pytest.fixture
def trial_plan(tenant):
    return make_plan(tenant, amount=1000, code_name="trial", has_trial=True, trial_length_days=14)


def trial(api, customer, **body):
    return api.post(f"/api/v1/customers/{customer.id}/subscriptions/trial", body, format="json")


def test_trial_issues_no_invoice_then_extend_charges(api, clock, card_customer, trial_plan):
    response = trial(api, card_customer, subscription_plan="trial", card_token="tok_visa")
    assert response.status_code == 201, response.content
    assert_matches_schema(response, "post", "/api/v1/customers/{customer_id}/subscriptions/trial")
    body = response.json()
    assert body["status"] == "trial_active"
    assert body["trial_ends_at"] == "2026-01-15T00:00:00Z"
    assert not Invoice.objects.exists()

    clock.move_to(dt.datetime(2026, 1, 5, tzinfo=UTC))
    response = api.post(f"/api/v1/subscriptions/{body['id']}/extend", {}, format="json")
    assert response.status_code == 200, response.content
    extended = response.json()
    assert extended["status"] == "active"
    assert extended["current_period_start"] == "2026-01-05T00:00:00Z"
    assert extended["valid_until"] == "2026-02-05T00:00:00Z"
    invoice = Invoice.objects.get(subscription_id=body["id"])
    assert (invoice.billing_reason, invoice.total, invoice.status) == (
        "trial_conversion",
        1000,
        "paid",
    )


def test_extend_with_a_declined_card_keeps_the_trial(api, clock, card_customer, trial_plan):
    body = trial(
        api, card_customer, subscription_plan="trial", card_token="tok_insufficient_funds"
    ).json()
    response = api.post(f"/api/v1/subscriptions/{body['id']}/extend", {}, format="json")
    assert response.status_code == 402
    assert response.json()["failure_reason"] == "lack_of_funds"
    subscription = Subscription.objects.get(pk=body["id"])
    assert subscription.status == "trial_active"
    assert Invoice.objects.get(subscription=subscription).status == "void"


def test_start_on_a_trial_plan_starts_a_trial_unless_denied(
    api, clock, invoice_customer, trial_plan
):
    url = f"/api/v1/customers/{invoice_customer.id}/subscriptions"
    assert api.post(url, {"subscription_plan": "trial"}, format="json").json()["status"] == (
        "trial_active"
    )
    denied = api.post(url, {"subscription_plan": "trial", "deny_trial": True}, format="json")
    assert denied.json()["status"] == "active"


def test_trial_end_converts_with_a_card_and_ends_without_one(
    api, tenant, clock, card_customer, trial_plan
):
    from tests.factories import CustomerFactory

    with_card = trial(api, card_customer, subscription_plan="trial", card_token="tok_visa").json()
    no_card_customer = CustomerFactory(tenant=tenant)
    without = trial(api, no_card_customer, subscription_plan="trial").json()
    trial_end = dt.datetime(2026, 1, 15, tzinfo=UTC)
    clock.move_to(trial_end)

    converted = Subscription.objects.get(pk=with_card["id"])
    invoice = services.subscription_end_trial(converted, trial_end)
    converted.refresh_from_db()
    assert converted.status == "active"
    assert (converted.current_period_start, converted.valid_until) == (
        trial_end,
        dt.datetime(2026, 2, 15, tzinfo=UTC),
    )
    assert (invoice.billing_reason, invoice.status, invoice.total) == (
        "trial_conversion",
        "paid",
        1000,
    )

    ended = Subscription.objects.get(pk=without["id"])
    assert services.subscription_end_trial(ended, trial_end) is None
    ended.refresh_from_db()
    assert ended.status == "trial_ended"


def test_standalone_trial_ends_even_with_a_card(api, tenant, clock, card_customer):
    make_plan(
        tenant, code_name="solo", has_trial=True, trial_length_days=7, is_trial_standalone=True
    )
    body = trial(api, card_customer, subscription_plan="solo", card_token="tok_visa").json()
    subscription = Subscription.objects.get(pk=body["id"])
    services.subscription_end_trial(subscription, START + dt.timedelta(days=7))
    subscription.refresh_from_db()
    assert subscription.status == "trial_ended"


def start_paid(api, customer):
    response = api.post(
        f"/api/v1/customers/{customer.id}/subscriptions",
        {"subscription_plan": "pro", "card_token": "tok_visa"},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def cancel(api, subscription, **body):
    return api.post(f"/api/v1/subscriptions/{subscription['id']}/cancel", body, format="json")


def test_cancel_end_of_run_waits_for_the_period_end(api, clock, card_customer, plan_and_price):
    subscription = start_paid(api, card_customer)
    response = cancel(api, subscription, when="end-of-run", refund_type="none")
    assert response.status_code == 200, response.content
    assert_matches_schema(response, "post", "/api/v1/subscriptions/{id}/cancel")
    body = response.json()
    assert (body["status"], body["cancel_at"], body["ended_at"]) == (
        "pending_cancel",
        "2026-02-01T00:00:00Z",
        None,
    )
    assert not Refund.objects.exists()

    row = Subscription.objects.get(pk=subscription["id"])
    services.subscription_apply_scheduled_cancellation(row, MID)
    assert Subscription.objects.get(pk=row.pk).status == "pending_cancel"
    services.subscription_apply_scheduled_cancellation(row, dt.datetime(2026, 2, 1, tzinfo=UTC))
    row.refresh_from_db()
    assert (row.status, row.ended_at) == ("cancelled", dt.datetime(2026, 2, 1, tzinfo=UTC))


def test_cancel_instantly_with_full_refund(api, clock, card_customer, plan_and_price):
    subscription = start_paid(api, card_customer)
    clock.move_to(MID)
    body = cancel(api, subscription, when="instantly", refund_type="full").json()
    assert (body["status"], body["ended_at"]) == ("cancelled", "2026-01-16T00:00:00Z")
    assert list(Refund.objects.values_list("amount", flat=True)) == [1000]


def test_cancel_instantly_with_prorated_refund(api, clock, card_customer, plan_and_price):
    subscription = start_paid(api, card_customer)
    clock.move_to(MID)
    cancel(api, subscription, when="instantly", refund_type="prorate", comment="moving away")
    # 1000 paid, 16 of 31 days unused: 516.13 -> 516.
    refund = Refund.objects.get()
    assert (refund.amount, refund.reason) == (516, "moving away")


def test_cancel_on_a_specific_date_with_prorated_refund(api, clock, card_customer, plan_and_price):
    subscription = start_paid(api, card_customer)
    body = cancel(
        api, subscription, when="specific-date", date="2026-01-16", refund_type="prorate"
    ).json()
    assert (body["status"], body["cancel_at"]) == ("pending_cancel", "2026-01-16T00:00:00Z")
    assert Refund.objects.get().amount == 516


def test_cancel_validation(api, clock, card_customer, plan_and_price):
    subscription = start_paid(api, card_customer)
    assert cancel(api, subscription, when="specific-date").status_code == 400
    assert cancel(api, subscription, when="specific-date", date="2025-12-31").status_code == 400
    assert cancel(api, subscription, when="whenever").status_code == 400
    assert cancel(api, subscription, when="instantly").status_code == 200
    assert cancel(api, subscription, when="instantly").status_code == 409
