"""Tenant isolation (DESIGN, Tenancy and security): another tenant's ids answer 404 exactly like
ids that exist nowhere, on every method, and lists never show another tenant's rows."""

import uuid

import pytest

from customers.models import Customer, Namespace
from tests.factories import CustomerFactory
from tests.openapi import assert_error_body, assert_matches_schema
from tests.tenants.endpoints import ENDPOINTS, call, make_objects

pytestmark = pytest.mark.django_db

ONE_OBJECT_ENDPOINTS = [endpoint for endpoint in ENDPOINTS if endpoint.targets_one_object]
LIST_ENDPOINTS = [e for e in ENDPOINTS if e.method == "get" and not e.targets_one_object]


def _snapshot():
    return sorted(
        Customer.objects.values_list("id", "email", "name", "status", "updated_at")
    ), sorted(Namespace.objects.values_list("id", "name", "description", "updated_at"))


@pytest.mark.parametrize("endpoint", ONE_OBJECT_ENDPOINTS, ids=str)
def test_other_tenants_object_is_404_and_unchanged(endpoint, tenant, other_api):
    objects_of_a = make_objects(tenant)
    before = _snapshot()

    response = call(other_api, endpoint, objects_of_a)

    body = assert_error_body(response, 404)
    assert_matches_schema(response, endpoint.method, endpoint.schema_path)
    assert _snapshot() == before
    # Indistinguishable from an id that exists nowhere.
    nowhere = {"customer": str(uuid.uuid4()), "namespace": "no-such-namespace"}
    assert call(other_api, endpoint, nowhere).json() == body


@pytest.mark.parametrize("endpoint", ONE_OBJECT_ENDPOINTS, ids=str)
@pytest.mark.parametrize("malformed", ["not-a-uuid", "12345", "%20", "x" * 300])
def test_malformed_id_is_404(endpoint, malformed, api, tenant):
    objects = make_objects(tenant)
    response = call(api, endpoint, {**objects, "customer": malformed, "namespace": malformed})
    assert_error_body(response, 404)


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS, ids=str)
def test_lists_show_only_the_callers_rows(endpoint, tenant, other_tenant, api, other_api):
    make_objects(tenant)
    make_objects(other_tenant, prefix="b-")
    own_ids = {
        str(pk)
        for model in (Customer, Namespace)
        for pk in model.objects.filter(tenant=tenant).values_list("pk", flat=True)
    }

    for client, expected_tenant in ((api, tenant), (other_api, other_tenant)):
        data = client.get(endpoint.path + "?limit=100").json()["data"]
        assert data
        ids = {item["id"] for item in data}
        if expected_tenant == tenant:
            assert ids <= own_ids
        else:
            assert not ids & own_ids


def test_filters_cannot_reach_another_tenant(tenant, other_api):
    customer_of_a = CustomerFactory(tenant=tenant, email="ada@example.com", reference="r-1")
    for query in (
        "email=ada@example.com",
        "reference=r-1",
        f"customer={customer_of_a.pk}",
    ):
        path = "/api/v1/namespaces" if query.startswith("customer") else "/api/v1/customers"
        assert other_api.get(f"{path}?{query}").json()["data"] == [], query


def test_namespace_for_another_tenants_customer_is_refused_like_an_unknown_one(tenant, other_api):
    customer_of_a = CustomerFactory(tenant=tenant)
    customer_ids = [str(customer_of_a.pk), str(uuid.uuid4())]
    answers = [
        other_api.post(
            "/api/v1/namespaces", {"name": "stolen", "customer": customer_id}, format="json"
        )
        for customer_id in customer_ids
    ]
    bodies = [assert_error_body(answer, 400, errors=True) for answer in answers]
    assert list(bodies[0]["errors"]) == ["customer"]
    messages = [
        body["message"][0].replace(customer_id, "ID")
        for body, customer_id in zip(bodies, customer_ids, strict=True)
    ]
    assert messages[0] == messages[1]
    assert not Namespace.objects.filter(name="stolen").exists()


def test_same_email_in_two_tenants_is_allowed(api, other_api):
    assert api.post("/api/v1/customers", {"email": "a@b.com"}, format="json").status_code == 201
    assert (
        other_api.post("/api/v1/customers", {"email": "a@b.com"}, format="json").status_code == 201
    )
