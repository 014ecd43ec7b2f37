"""Namespaces (API.md, Namespaces): CRUD, names unique per tenant and immutable, the default
namespace of a customer cannot be deleted."""

import pytest

from customers.models import Namespace
from tests.factories import CustomerFactory
from tests.openapi import assert_error_body, assert_matches_schema

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(tenant):
    return CustomerFactory(tenant=tenant, email="ada@example.com")


def test_create_fetch_patch_delete(api, customer):
    created = api.post(
        "/api/v1/namespaces",
        {
            "name": "ada-staging",
            "customer": str(customer.pk),
            "description": "Staging",
            "labels": {"env": "staging"},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert_matches_schema(created, "post", "/api/v1/namespaces")
    assert created.json()["customer"] == str(customer.pk)

    fetched = api.get("/api/v1/namespaces/ada-staging")
    assert fetched.status_code == 200
    assert_matches_schema(fetched, "get", "/api/v1/namespaces/{ns}")
    assert fetched.json()["labels"] == {"env": "staging"}

    patched = api.patch(
        "/api/v1/namespaces/ada-staging",
        {"description": "Pre-production", "name": "renamed", "customer": None},
        format="json",
    )
    assert patched.status_code == 200
    assert_matches_schema(patched, "patch", "/api/v1/namespaces/{ns}")
    assert patched.json()["description"] == "Pre-production"
    assert patched.json()["name"] == "ada-staging"  # names are immutable

    deleted = api.delete("/api/v1/namespaces/ada-staging")
    assert deleted.status_code == 204
    assert_matches_schema(deleted, "delete", "/api/v1/namespaces/{ns}")
    assert not Namespace.objects.filter(name="ada-staging").exists()
    assert_error_body(api.get("/api/v1/namespaces/ada-staging"), 404)


def test_list_filtered_by_customer(api, tenant, customer):
    other = CustomerFactory(tenant=tenant)
    response = api.get(f"/api/v1/namespaces?customer={customer.pk}")
    assert [ns["name"] for ns in response.json()["data"]] == [customer.default_namespace.name]
    assert_matches_schema(response, "get", "/api/v1/namespaces")
    assert other.default_namespace.name not in response.content.decode()


@pytest.mark.parametrize("name", ["Upper", "1starts-with-digit", "has_underscore", "a" * 64, ""])
def test_name_must_be_a_dns_label(api, customer, name):
    response = api.post(
        "/api/v1/namespaces", {"name": name, "customer": str(customer.pk)}, format="json"
    )
    body = assert_error_body(response, 400, errors=True)
    assert list(body["errors"]) == ["name"]
    assert_matches_schema(response, "post", "/api/v1/namespaces")


def test_name_is_unique_per_tenant(api, other_api, customer, other_tenant):
    taken = customer.default_namespace.name
    response = api.post(
        "/api/v1/namespaces", {"name": taken, "customer": str(customer.pk)}, format="json"
    )
    body = assert_error_body(response, 400, errors=True)
    assert body["errors"] == {"name": ["name is already taken"]}
    other_customer = CustomerFactory(tenant=other_tenant)
    elsewhere = other_api.post(
        "/api/v1/namespaces", {"name": taken, "customer": str(other_customer.pk)}, format="json"
    )
    assert elsewhere.status_code == 201


def test_default_namespace_cannot_be_deleted(api, customer):
    response = api.delete(f"/api/v1/namespaces/{customer.default_namespace.name}")
    body = assert_error_body(response, 409)
    assert "default namespace" in body["message"][0]
    assert_matches_schema(response, "delete", "/api/v1/namespaces/{ns}")
    assert Namespace.objects.filter(pk=customer.default_namespace_id).exists()


def test_customer_create_with_a_taken_namespace_name_is_400(api, customer):
    response = api.post(
        "/api/v1/customers",
        {"email": "bob@example.com", "namespace": customer.default_namespace.name},
        format="json",
    )
    body = assert_error_body(response, 400, errors=True)
    assert body["errors"] == {"namespace": ["namespace name is already taken"]}


def test_a_namespace_with_usage_cannot_be_deleted(api, tenant, customer):
    from django.utils import timezone

    from usage.models import UsageEvent

    extra = api.post(
        "/api/v1/namespaces", {"name": "team-a", "customer": str(customer.id)}, format="json"
    )
    assert extra.status_code == 201
    UsageEvent.objects.create(
        tenant=tenant,
        event_id="evt-1",
        code="api_calls",
        customer=customer,
        namespace_id=extra.json()["id"],
        timestamp=timezone.now(),
    )
    response = api.delete("/api/v1/namespaces/team-a")
    body = assert_error_body(response, 409)
    assert "usage recorded" in body["message"][0]
    assert Namespace.objects.filter(name="team-a").exists()
    assert UsageEvent.objects.filter(event_id="evt-1").count() == 1
