import pytest

from customers.models import Customer, Namespace
from tests.factories import CustomerFactory
from tests.openapi import assert_error_body, assert_matches_schema
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


def test_create_answers_201_matching_the_schema(api):
    response = api.post(
        "/api/v1/customers",
        {
            "email": "billing@acme.example",
            "name": "Acme GmbH",
            "type": "business",
            "billing_type": "invoice",
            "tax_number": "DE123456789",
            "address": {"company_name": "Acme GmbH", "city": "Berlin", "country": "DE"},
            "metadata": {"crm_id": 42},
            "currency": "eur",
            "namespace": "acme-prod",
        },
        format="json",
    )
    assert response.status_code == 201
    assert_matches_schema(response, "post", "/api/v1/customers")
    body = response.json()
    assert body["default_namespace"] == "acme-prod"
    assert body["currency"] == "EUR"
    assert body["metadata"] == {"crm_id": 42}
    assert body["address"]["company_name"] == "Acme GmbH"
    assert "namespace" not in body


def test_retrieve_put_patch_disable_enable(api, tenant):
    customer = CustomerFactory(tenant=tenant, email="ada@example.com", name="Ada")
    path = f"/api/v1/customers/{customer.pk}"

    fetched = api.get(path)
    assert fetched.status_code == 200
    assert_matches_schema(fetched, "get", "/api/v1/customers/{id}")
    assert fetched.json()["email"] == "ada@example.com"

    patched = api.patch(path, {"address": {"country": "fr"}}, format="json")
    assert patched.status_code == 200
    assert_matches_schema(patched, "patch", "/api/v1/customers/{id}")
    assert patched.json()["address"]["country"] == "FR"
    assert patched.json()["name"] == "Ada"

    replaced = api.put(path, {"email": "ada@lovelace.example"}, format="json")
    assert replaced.status_code == 200
    assert_matches_schema(replaced, "put", "/api/v1/customers/{id}")
    assert replaced.json()["email"] == "ada@lovelace.example"
    assert replaced.json()["default_namespace"] == customer.default_namespace.name

    disabled = api.post(f"{path}/disable")
    assert disabled.status_code == 200
    assert_matches_schema(disabled, "post", "/api/v1/customers/{id}/disable")
    assert disabled.json()["status"] == "disabled"
    assert api.get("/api/v1/customers?status=disabled").json()["data"][0]["id"] == str(customer.pk)

    enabled = api.post(f"{path}/enable")
    assert_matches_schema(enabled, "post", "/api/v1/customers/{id}/enable")
    assert enabled.json()["status"] == "active"
    assert list(
        WebhookEvent.objects.filter(tenant=tenant)
        .order_by("created_at")
        .values_list("type", flat=True)
    ) == [
        "customer.created",
        "customer.updated",
        "customer.updated",
        "customer.disabled",
        "customer.enabled",
    ]


def test_put_without_email_is_400(api, tenant):
    customer = CustomerFactory(tenant=tenant)
    response = api.put(f"/api/v1/customers/{customer.pk}", {"name": "x"}, format="json")
    assert_error_body(response, 400, errors=True)
    assert_matches_schema(response, "put", "/api/v1/customers/{id}")


def test_patch_to_an_email_of_another_customer_is_400(api, tenant):
    CustomerFactory(tenant=tenant, email="taken@example.com")
    customer = CustomerFactory(tenant=tenant, email="mine@example.com")
    response = api.patch(
        f"/api/v1/customers/{customer.pk}", {"email": "TAKEN@example.com"}, format="json"
    )
    body = assert_error_body(response, 400, errors=True)
    assert body["errors"] == {"email": ["email is already used by another customer"]}
    customer.refresh_from_db()
    assert customer.email == "mine@example.com"


def test_customer_filters(api, tenant):
    CustomerFactory(tenant=tenant, email="ada@example.com", reference="r-ada", country="GB")
    CustomerFactory(tenant=tenant, email="bob@example.com", company_name="Bobs Tools", country="DE")
    for query, emails in [
        ("email=ADA@example.com", ["ada@example.com"]),
        ("reference=r-ada", ["ada@example.com"]),
        ("country=de", ["bob@example.com"]),
        ("company_name=tools", ["bob@example.com"]),
        ("status=active", ["ada@example.com", "bob@example.com"]),
    ]:
        response = api.get(f"/api/v1/customers?{query}")
        assert [c["email"] for c in response.json()["data"]] == emails, query
    response = api.get("/api/v1/customers?status=deleted")
    assert_error_body(response, 400, errors=True)
    assert_matches_schema(response, "get", "/api/v1/customers")


@pytest.mark.parametrize("count", [1, 30])
def test_customer_list_runs_a_constant_number_of_queries(
    api, tenant, count, django_assert_num_queries
):
    for _ in range(count):
        CustomerFactory(tenant=tenant)
    api.get("/api/v1/customers")  # the key is resolved (and cached) and its use recorded once
    # One query: the page with each customer's default namespace.
    with django_assert_num_queries(1):
        response = api.get("/api/v1/customers?limit=100")
    assert len(response.json()["data"]) == count


@pytest.mark.parametrize("count", [1, 30])
def test_namespace_list_runs_a_constant_number_of_queries(
    api, tenant, count, django_assert_num_queries
):
    for _ in range(count):
        CustomerFactory(tenant=tenant)
    api.get("/api/v1/namespaces")
    with django_assert_num_queries(1):
        response = api.get("/api/v1/namespaces?limit=100")
    assert len(response.json()["data"]) == count
