import pytest

from customers.models import Customer, Namespace
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def test_create_customer_gets_default_namespace_and_emits_event(api, tenant):
    response = api.post(
        "/api/v1/customers",
        {"email": "ada@example.com", "address": {"country": "gb"}, "standard_tax_rate": 19.5},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["email"] == "ada@example.com"
    assert body["address"]["country"] == "GB"
    assert body["standard_tax_rate"] == "19.5"
    assert body["billing_type"] == "card"
    assert body["type"] == "individual"
    assert body["locale"] == "en"
    assert body["brand"] == "default"
    assert body["status"] == "active"
    assert body["default_namespace"] == "c-" + body["id"].replace("-", "")[-12:]
    assert Namespace.objects.get(name=body["default_namespace"]).customer_id is not None
    assert WebhookEvent.objects.filter(tenant=tenant, type="customer.created").count() == 1


def test_duplicate_email_is_400_case_insensitively(api):
    assert api.post("/api/v1/customers", {"email": "a@b.com"}, format="json").status_code == 201
    response = api.post("/api/v1/customers", {"email": "A@B.com"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"email": ["email is already used by another customer"]}
    assert Customer.objects.count() == 1
