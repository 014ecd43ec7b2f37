import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.utils import timezone
from standardwebhooks import Webhook

from webhooks.models import WebhookDelivery
from webhooks.services import MAX_ATTEMPTS, deliveries_send_due

pytestmark = pytest.mark.django_db


class Receiver:
    """A real HTTP server on loopback that records what it is sent and answers `status`."""

    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_endpoint_secret_is_returned_once(api, receiver):
    created = api.post(
        "/api/v1/webhook-endpoints",
        {"url": receiver.url, "events": ["customer.created"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["secret"].startswith("whsec_")
    fetched = api.get(f"/api/v1/webhook-endpoints/{created.json()['id']}")
    assert fetched.status_code == 200
    assert "secret" not in fetched.json()


def test_unknown_event_type_is_rejected(api, receiver):
    response = api.post(
        "/api/v1/webhook-endpoints", {"url": receiver.url, "events": ["nope"]}, format="json"
    )
    assert response.status_code == 400
    assert "events.0" in response.json()["errors"]


def test_customer_created_is_delivered_signed(api, receiver, django_capture_on_commit_callbacks):
    secret = api.post(
        "/api/v1/webhook-endpoints",
        {"url": receiver.url, "events": ["customer.created"]},
        format="json",
    ).json()["secret"]
    with django_capture_on_commit_callbacks(execute=True):
        customer = api.post("/api/v1/customers", {"email": "ada@example.com"}, format="json")
        api.patch(f"/api/v1/customers/{customer.json()['id']}", {"name": "Ada"}, format="json")

    assert len(receiver.received) == 1, "only the subscribed event type is sent"
    headers, body = receiver.received[0]
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "customer.created"
    assert payload["data"]["email"] == "ada@example.com"
    assert payload["data"]["id"] == customer.json()["id"]
    assert headers["webhook-id"] == payload["id"]

    deliveries = api.get("/api/v1/webhook-deliveries?status=succeeded").json()["data"]
    assert [(d["event_type"], d["attempt_count"], d["last_status_code"]) for d in deliveries] == [
        ("customer.created", 1, 200)
    ]


def test_failed_delivery_backs_off_then_succeeds(api, receiver):
    api.post("/api/v1/webhook-endpoints", {"url": receiver.url}, format="json")
    receiver.status = 500
    api.post("/api/v1/customers", {"email": "ada@example.com"}, format="json")
    start = timezone.now()

    assert deliveries_send_due(now=start) == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == (
        "pending",
        1,
        500,
    )
    assert 29 <= (delivery.next_attempt_at - start).total_seconds() <= 31
    assert deliveries_send_due(now=start) == 0, "not due again before its back-off"

    receiver.status = 204
    with time_machine.travel(delivery.next_attempt_at, tick=False):
        assert deliveries_send_due() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("succeeded", 2)
    assert list(delivery.attempts.values_list("status_code", flat=True).order_by("created_at")) == [
        500,
        204,
    ]
    # Retries carry the same webhook-id, so receivers can deduplicate.
    assert receiver.received[0][0]["webhook-id"] == receiver.received[1][0]["webhook-id"]
    assert json.loads(receiver.received[1][1])["type"] == "customer.created"


def test_delivery_gives_up_after_max_attempts(api):
    api.post("/api/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/closed"}, format="json")
    api.post("/api/v1/customers", {"email": "ada@example.com"}, format="json")
    delivery = WebhookDelivery.objects.get()
    for _ in range(MAX_ATTEMPTS):
        delivery.refresh_from_db()
        with time_machine.travel(delivery.next_attempt_at, tick=False):
            deliveries_send_due()
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.attempt_count == MAX_ATTEMPTS
    assert delivery.last_status_code is None
    assert delivery.last_error


def test_endpoints_are_tenant_scoped(api, other_api, receiver):
    endpoint = api.post("/api/v1/webhook-endpoints", {"url": receiver.url}, format="json").json()
    assert other_api.get(f"/api/v1/webhook-endpoints/{endpoint['id']}").status_code == 404
    assert other_api.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}").status_code == 404
    assert other_api.get("/api/v1/webhook-endpoints").json()["data"] == []
