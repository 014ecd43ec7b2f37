"""A webhook travels from the API through Redis to a real worker and reaches a real receiver."""

import pytest
from standardwebhooks import Webhook

from tests.integration.conftest import integration, wait_until
from tests.webhooks.test_webhooks import Receiver
from webhooks.models import WebhookDelivery

pytestmark = integration


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_customer_created_webhook_is_delivered_by_a_worker(celery_worker, api, receiver):
    secret = api.post(
        "/api/v1/webhook-endpoints",
        {"url": receiver.url, "events": ["customer.created"]},
        format="json",
    ).json()["secret"]

    created = api.post("/api/v1/customers", {"email": "grace@example.com"}, format="json")
    assert created.status_code == 201

    wait_until(lambda: receiver.received, timeout=30)
    headers, body = receiver.received[0]
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "customer.created"
    assert payload["data"]["id"] == created.json()["id"]
    delivery = wait_until(
        lambda: WebhookDelivery.objects.filter(status="succeeded").first(), timeout=10
    )
    assert delivery.attempt_count == 1
    assert delivery.last_status_code == 200
