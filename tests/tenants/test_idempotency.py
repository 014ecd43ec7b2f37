"""`Idempotency-Key` (API.md, Conventions, Idempotency): a retry replays the first answer byte for
byte and does nothing twice; another body with the same key, or a race, is 409."""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from customers.models import Customer
from tests.factories import CustomerFactory
from tests.openapi import assert_error_body, assert_matches_schema
from tests.utils import postgresql_only
from webhooks.models import WebhookEvent


def _post(api, body, key, path="/api/v1/customers"):
    return api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.django_db
def test_replay_returns_the_identical_answer_and_creates_one_customer(api):
    first = _post(api, {"email": "ada@example.com", "name": "Ada"}, "create-ada")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first

    replay = _post(api, {"email": "ada@example.com", "name": "Ada"}, "create-ada")

    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert replay["Content-Type"] == first["Content-Type"]
    assert_matches_schema(replay, "post", "/api/v1/customers")
    assert Customer.objects.count() == 1
    assert WebhookEvent.objects.filter(type="customer.created").count() == 1


@pytest.mark.django_db
def test_same_key_with_another_body_is_409(api):
    assert _post(api, {"email": "ada@example.com"}, "k1").status_code == 201

    response = _post(api, {"email": "grace@example.com"}, "k1")

    body = assert_error_body(response, 409)
    assert "different request" in body["message"][0]
    assert_matches_schema(response, "post", "/api/v1/customers")
    assert list(Customer.objects.values_list("email", flat=True)) == ["ada@example.com"]


@pytest.mark.django_db
def test_an_error_answer_is_replayed_too(api):
    first = _post(api, {"email": "not-an-email"}, "bad")
    assert first.status_code == 400
    replay = _post(api, {"email": "not-an-email"}, "bad")
    assert replay.status_code == 400
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content


@pytest.mark.django_db
def test_keys_are_per_tenant(api, other_api):
    assert _post(api, {"email": "ada@example.com"}, "shared").status_code == 201
    other = _post(other_api, {"email": "ada@example.com"}, "shared")
    assert other.status_code == 201
    assert "Idempotent-Replayed" not in other
    assert Customer.objects.count() == 2


@pytest.mark.django_db
def test_actions_are_idempotent(api, tenant):
    customer = CustomerFactory(tenant=tenant)
    path = f"/api/v1/customers/{customer.pk}/disable"
    first = api.post(path, HTTP_IDEMPOTENCY_KEY="off")
    api.post(f"/api/v1/customers/{customer.pk}/enable")
    replay = api.post(path, HTTP_IDEMPOTENCY_KEY="off")
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    # The replay did not disable the (since re-enabled) customer again.
    customer.refresh_from_db()
    assert customer.status == "active"
    assert WebhookEvent.objects.filter(type="customer.disabled").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "k" * 256])
def test_key_length_outside_1_to_255_is_400(api, key):
    response = _post(api, {"email": "ada@example.com"}, key)
    assert_error_body(response, 400, errors=True)
    assert not Customer.objects.exists()


@pytest.mark.django_db
def test_get_ignores_the_key(api):
    assert api.get("/api/v1/customers", HTTP_IDEMPOTENCY_KEY="x").status_code == 200
    assert "Idempotent-Replayed" not in api.get("/api/v1/customers", HTTP_IDEMPOTENCY_KEY="x")


@postgresql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_same_key_racing_from_two_threads_creates_one_customer(api_key, attempt):
    barrier = threading.Barrier(2, timeout=10)
    answers: list = []

    def send():
        client = APIClient()
        client.credentials(HTTP_X_BILLING_API_KEY=api_key)
        try:
            barrier.wait()
            answers.append(_post(client, {"email": "race@example.com"}, "race"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(answers) == 2
    assert Customer.objects.filter(email="race@example.com").count() == 1
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses in ([201, 201], [201, 409]), [a.content for a in answers]
    originals = [a for a in answers if a.status_code == 201 and "Idempotent-Replayed" not in a]
    assert len(originals) == 1
    for answer in answers:
        if answer is originals[0]:
            continue
        if answer.status_code == 201:
            assert answer["Idempotent-Replayed"] == "true"
            assert answer.content == originals[0].content
        else:
            assert_error_body(answer, 409)
