"""API keys (API.md, Conventions, Authentication): every endpoint needs a usable key of the tenant,
in the header or the query string; anything else is 403 in the error shape and changes nothing."""

import datetime as dt
import re

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from customers.models import Customer, Namespace
from tenants.models import ApiKey
from tenants.selectors import api_key_for_clear_key
from tenants.services import api_key_create, api_key_revoke
from tests.openapi import assert_error_body, assert_matches_schema
from tests.tenants.endpoints import ENDPOINTS, PUBLIC_PATHS, call, make_objects

pytestmark = pytest.mark.django_db


def _revoked_key(tenant) -> str:
    issued = api_key_create(tenant=tenant, name="revoked")
    api_key_revoke(api_key=issued.api_key)
    return issued.clear_key


def _expired_key(tenant) -> str:
    expired_at = timezone.now() - dt.timedelta(seconds=1)
    return api_key_create(tenant=tenant, name="expired", expires_at=expired_at).clear_key


BAD_KEYS = {
    "no key": lambda tenant: None,
    "empty key": lambda tenant: "",
    "unknown key": lambda tenant: "bk_" + "x" * 43,
    "revoked key": _revoked_key,
    "expired key": _expired_key,
}


def _snapshot():
    return (
        sorted(Customer.objects.values_list("email", "name", "status")),
        sorted(Namespace.objects.values_list("name", "description")),
    )


@pytest.mark.parametrize("way", ["header", "query"])
@pytest.mark.parametrize("bad_key", BAD_KEYS)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_endpoint_refuses_a_bad_key_with_403(endpoint, bad_key, way, tenant):
    objects = make_objects(tenant)
    clear_key = BAD_KEYS[bad_key](tenant)
    client, query = APIClient(), ""
    if clear_key is not None and way == "header":
        client.credentials(HTTP_X_BILLING_API_KEY=clear_key)
    elif clear_key is not None:
        query = f"?api_key={clear_key}"
    before = _snapshot()

    response = call(client, endpoint, objects, query=query)

    assert_error_body(response, 403)
    assert_matches_schema(response, endpoint.method, endpoint.schema_path)
    assert _snapshot() == before


@pytest.mark.parametrize("way", ["header", "query"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_endpoint_accepts_a_usable_key(endpoint, way, tenant):
    objects = make_objects(tenant)
    future = timezone.now() + dt.timedelta(days=1)
    issued = api_key_create(tenant=tenant, name="ci", expires_at=future)
    client, query = APIClient(), ""
    if way == "header":
        client.credentials(HTTP_X_BILLING_API_KEY=issued.clear_key)
    else:
        query = f"?api_key={issued.clear_key}"

    response = call(client, endpoint, objects, query=query)

    assert 200 <= response.status_code < 300, response.content
    assert_matches_schema(response, endpoint.method, endpoint.schema_path)
    issued.api_key.refresh_from_db()
    assert issued.api_key.last_used_at is not None


def test_key_of_one_tenant_is_stored_hashed_only(tenant):
    issued = api_key_create(tenant=tenant)
    stored = ApiKey.objects.get(pk=issued.api_key.pk)
    assert issued.clear_key.startswith("bk_") and len(issued.clear_key) >= 43
    assert issued.clear_key not in (stored.key_hash, stored.prefix)
    assert issued.clear_key.startswith(stored.prefix)


def test_last_used_is_written_at_most_once_a_minute(api, tenant, django_assert_num_queries):
    api.get("/api/v1/customers")
    key = ApiKey.objects.get(tenant=tenant)
    first_use = key.last_used_at
    assert first_use is not None
    # Only the page's query: the resolved key comes from the cache, and nothing is written
    # again within the minute.
    with django_assert_num_queries(1):
        assert api.get("/api/v1/customers").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at == first_use


@pytest.mark.parametrize("path", PUBLIC_PATHS)
def test_public_paths_need_no_key(anonymous_api, path):
    response = anonymous_api.get(path)
    assert response.status_code == 200, response.content[:300]


@pytest.mark.parametrize("path", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_docs_load_their_assets_locally(anonymous_api, path):
    html = anonymous_api.get(path).content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "cdnjs", "https://", "http://"):
        assert cdn not in html, f"{path} loads {cdn}"
    assets = set(re.findall(r"""(?:src|href)=["'](/static/[^"']+)["']""", html))
    assert assets, html
    for asset in assets:
        # Served by the project itself, also with DEBUG off (settings.SERVE_STATIC).
        assert anonymous_api.get(asset).status_code == 200, asset


def test_revoking_a_cached_key_takes_effect_at_once(tenant):
    issued = api_key_create(tenant=tenant, name="cached")
    client = APIClient()
    client.credentials(HTTP_X_BILLING_API_KEY=issued.clear_key)
    assert client.get("/api/v1/customers").status_code == 200  # now cached
    api_key_revoke(api_key=ApiKey.objects.get(pk=issued.api_key.pk))
    assert client.get("/api/v1/customers").status_code == 403


def test_a_changed_tenant_is_not_served_from_the_key_cache(api, tenant):
    assert api.get("/api/v1/customers").status_code == 200  # key and tenant now cached
    tenant.name = "Renamed"
    tenant.save()
    clear_key = api._credentials["HTTP_X_BILLING_API_KEY"]
    assert api_key_for_clear_key(clear_key).tenant.name == "Renamed"


def _every_operation():
    """(method, path) of every operation in the OpenAPI document, path parameters filled in."""
    from tests.openapi import openapi_document

    operations = []
    for template, item in openapi_document()["paths"].items():
        path = re.sub(
            r"\{([^}]+)\}",
            lambda m: (
                "1" if m.group(1) == "usage_reference" else "01a20000-0000-7000-8000-000000000000"
            ),
            template,
        )
        if template.startswith("/api/v1/no_auth/"):
            continue  # the one operation the contract leaves open
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                operations.append((method, path))
    return operations


@pytest.mark.parametrize("method,path", _every_operation())
def test_every_operation_in_the_schema_refuses_a_missing_or_wrong_key(anonymous_api, method, path):
    for client_key in (None, "bk_not-a-key"):
        if client_key:
            anonymous_api.credentials(HTTP_X_BILLING_API_KEY=client_key)
        response = getattr(anonymous_api, method)(path, {}, format="json")
        assert_error_body(response, 403)
