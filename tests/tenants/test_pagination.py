"""Keyset pagination (API.md, Conventions, Pagination): `limit` 1..100 and `last_key`, oldest
first, complete across pages."""

import uuid

import pytest

from customers.services import namespace_create
from tests.factories import CustomerFactory
from tests.openapi import assert_error_body, assert_matches_schema

pytestmark = pytest.mark.django_db


def _walk(api, path: str, limit: int) -> tuple[list[str], list[dict]]:
    """Follow `last_key` to the end; returns the ids in answer order and the pages."""
    ids, pages, last_key = [], [], None
    for _ in range(100):
        query = f"?limit={limit}" + (f"&last_key={last_key}" if last_key else "")
        response = api.get(path + query)
        assert response.status_code == 200, response.content
        assert_matches_schema(response, "get", path)
        page = response.json()
        pages.append(page)
        ids.extend(item["id"] for item in page["data"])
        if not page["has_more"]:
            return ids, pages
        last_key = page["last_key"]
        assert last_key == page["data"][-1]["id"]
    raise AssertionError("pagination did not end")


def test_customers_walk_is_complete_ordered_and_without_duplicates(api, tenant):
    created = [str(CustomerFactory(tenant=tenant).pk) for _ in range(25)]

    ids, pages = _walk(api, "/api/v1/customers", limit=10)

    assert ids == created
    assert [len(page["data"]) for page in pages] == [10, 10, 5]
    assert [page["has_more"] for page in pages] == [True, True, False]
    assert pages[-1]["last_key"] is None


def test_exact_multiple_of_the_limit_ends_without_an_empty_page(api, tenant):
    created = [str(CustomerFactory(tenant=tenant).pk) for _ in range(20)]
    ids, pages = _walk(api, "/api/v1/customers", limit=10)
    assert ids == created
    assert [len(page["data"]) for page in pages] == [10, 10]
    assert pages[-1] == {**pages[-1], "has_more": False, "last_key": None}


def test_namespaces_walk_is_complete_and_ordered(api, tenant):
    customer = CustomerFactory(tenant=tenant)
    created = [customer.default_namespace.name]
    for number in range(12):
        created.append(namespace_create(tenant=tenant, customer=customer, name=f"ns-{number}").name)

    ids, pages = _walk(api, "/api/v1/namespaces", limit=5)

    assert [item["name"] for page in pages for item in page["data"]] == created
    assert len(ids) == len(set(ids)) == 13
    assert [len(page["data"]) for page in pages] == [5, 5, 3]


def test_default_limit_is_10(api, tenant):
    for _ in range(11):
        CustomerFactory(tenant=tenant)
    page = api.get("/api/v1/customers").json()
    assert len(page["data"]) == 10
    assert page["has_more"] is True


def test_empty_list(api):
    response = api.get("/api/v1/customers")
    assert response.json() == {"data": [], "has_more": False, "last_key": None}
    assert_matches_schema(response, "get", "/api/v1/customers")


@pytest.mark.parametrize("limit", ["0", "101", "abc", "-1", "1.5"])
@pytest.mark.parametrize("path", ["/api/v1/customers", "/api/v1/namespaces"])
def test_limit_outside_1_to_100_is_400(api, path, limit):
    response = api.get(f"{path}?limit={limit}")
    body = assert_error_body(response, 400, errors=True)
    assert list(body["errors"]) == ["limit"]
    assert_matches_schema(response, "get", path)


@pytest.mark.parametrize("limit", ["1", "100"])
def test_limit_bounds_are_accepted(api, tenant, limit):
    CustomerFactory(tenant=tenant)
    assert api.get(f"/api/v1/customers?limit={limit}").status_code == 200


@pytest.mark.parametrize("last_key", ["not-a-uuid", "123", "%27%20OR%201=1"])
def test_malformed_last_key_is_400(api, last_key):
    response = api.get(f"/api/v1/customers?last_key={last_key}")
    body = assert_error_body(response, 400, errors=True)
    assert list(body["errors"]) == ["last_key"]


def test_unknown_but_wellformed_last_key_pages_from_that_position(api, tenant):
    customers = [str(CustomerFactory(tenant=tenant).pk) for _ in range(3)]
    before_all = str(uuid.UUID(int=0))
    after_all = "ffffffff-ffff-7fff-bfff-ffffffffffff"
    assert [
        c["id"] for c in api.get(f"/api/v1/customers?last_key={before_all}").json()["data"]
    ] == (customers)
    assert api.get(f"/api/v1/customers?last_key={after_all}").json()["data"] == []


def test_filters_and_pagination_combine(api, tenant):
    for number in range(5):
        CustomerFactory(tenant=tenant, country="FR" if number % 2 else "DE")
    page = api.get("/api/v1/customers?country=fr&limit=1").json()
    assert len(page["data"]) == 1 and page["has_more"] is True
    rest = api.get(f"/api/v1/customers?country=fr&limit=10&last_key={page['last_key']}").json()
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    assert {c["address"]["country"] for c in page["data"] + rest["data"]} == {"FR"}
