"""The one error shape (API.md, Conventions, Errors) on every kind of failure, from DRF views and
from plain Django alike."""

import json

import pytest
from django.test import override_settings

from customers.models import Customer, Namespace
from tenants.models import IdempotencyRecord
from tests.factories import CustomerFactory
from tests.openapi import assert_error_body, assert_matches_schema
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path", ["/api/v1/nowhere", "/api/v1/customers/", "/api/v2/customers", "/api/v1/customers/x/y"]
)
def test_unknown_route_is_404(api, path):
    body = assert_error_body(api.get(path), 404, errors=False)
    assert body["error"] == "Not Found"


def test_unknown_route_is_404_without_a_key_too(anonymous_api):
    assert_error_body(anonymous_api.post("/api/v1/nowhere", {}, format="json"), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/api/v1/customers/{customer}"),
        ("put", "/api/v1/customers"),
        ("get", "/api/v1/customers/{customer}/disable"),
        ("put", "/api/v1/namespaces/{namespace}"),
    ],
)
def test_wrong_method_is_405(api, tenant, method, path):
    customer = CustomerFactory(tenant=tenant)
    url = path.format(customer=customer.pk, namespace=customer.default_namespace.name)
    body = assert_error_body(getattr(api, method)(url, {}, format="json"), 405)
    assert body["error"] == "Method Not Allowed"
    assert Customer.objects.get().status == "active"


def test_malformed_json_is_400(api):
    response = api.post(
        "/api/v1/customers", '{"email": "a@b.com",', content_type="application/json"
    )
    assert_error_body(response, 400)
    assert_matches_schema(response, "post", "/api/v1/customers")
    assert not Customer.objects.exists()


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_body_over_the_limit_is_413_and_nothing_is_written(api):
    payload = json.dumps({"email": "big@example.com", "metadata": {"blob": "x" * 2000}})
    response = api.post("/api/v1/customers", payload, content_type="application/json")
    body = assert_error_body(response, 413)
    assert "1024" in body["message"][0]
    assert_matches_schema(response, "post", "/api/v1/customers")
    assert not Customer.objects.exists()


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_body_under_the_limit_is_accepted(api):
    payload = json.dumps({"email": "small@example.com", "metadata": {"blob": "x" * 500}})
    response = api.post("/api/v1/customers", payload, content_type="application/json")
    assert response.status_code == 201


def test_validation_errors_name_fields_with_dotted_keys(api):
    response = api.post(
        "/api/v1/customers",
        {"email": "not-an-email", "address": {"country": "XX"}, "billing_type": "cash"},
        format="json",
    )
    body = assert_error_body(response, 400, errors=True)
    assert_matches_schema(response, "post", "/api/v1/customers")
    assert set(body["errors"]) == {"email", "address.country", "billing_type"}
    assert body["errors"]["email"] == ["email must be an email"]
    assert body["errors"]["address.country"] == [
        "address.country: XX is not an ISO 3166-1 alpha-2 country code"
    ]
    # `message` lists every field message, so a client that shows only it loses nothing.
    assert sorted(body["message"]) == sorted(m for ms in body["errors"].values() for m in ms)


def test_missing_required_field_says_so_in_the_seed_wording(api):
    body = assert_error_body(api.post("/api/v1/customers", {}, format="json"), 400, errors=True)
    assert body["errors"] == {"email": ["email should not be empty"]}
    assert body["message"] == ["email should not be empty"]


def _boom(*args, **kwargs):
    raise RuntimeError("secret-internal-detail: connection to 10.0.0.7 refused")


@pytest.mark.parametrize("idempotency_key", [None, "retry-me"])
def test_unexpected_error_is_500_without_details_and_writes_nothing(
    api, monkeypatch, idempotency_key
):
    # The failure comes after the customer and its namespace were inserted, inside the service.
    monkeypatch.setattr("customers.services.emit", _boom)
    headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}

    response = api.post("/api/v1/customers", {"email": "ada@example.com"}, format="json", **headers)

    body = assert_error_body(response, 500, errors=False)
    assert_matches_schema(response, "post", "/api/v1/customers")
    assert "secret-internal-detail" not in response.content.decode()
    assert "RuntimeError" not in response.content.decode()
    assert body["error"] == "Internal Server Error"
    assert not Customer.objects.exists()
    assert not Namespace.objects.exists()
    assert not WebhookEvent.objects.exists()
    # A 500 is not remembered: the client's retry with the same key is a fresh attempt.
    assert not IdempotencyRecord.objects.exists()
    monkeypatch.undo()
    retry = api.post("/api/v1/customers", {"email": "ada@example.com"}, format="json", **headers)
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry


def test_unexpected_error_in_an_action_leaves_the_customer_unchanged(api, tenant, monkeypatch):
    customer = CustomerFactory(tenant=tenant)
    monkeypatch.setattr("customers.services.emit", _boom)

    response = api.post(f"/api/v1/customers/{customer.pk}/disable")

    assert_error_body(response, 500)
    assert_matches_schema(response, "post", "/api/v1/customers/{id}/disable")
    customer.refresh_from_db()
    assert customer.status == "active"
