"""The hot path of GET /customers/{id} (tenants.api.hot) answers exactly as the DRF view does:
same status, body and headers, same keys refused, same rate-limit bucket; one statement."""

import datetime as dt
import threading
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from customers.models import Customer
from tenants.api import hot
from tenants.models import ApiKey, hash_api_key
from tenants.services import api_key_create, api_key_revoke
from tests.factories import CustomerFactory
from tests.openapi import assert_error_body, assert_matches_schema
from tests.utils import postgresql_only

pytestmark = [pytest.mark.django_db, postgresql_only]

COMPARED_HEADERS = ("Content-Type", "Allow", "Content-Length", "Retry-After")


def _both_paths(client: APIClient, url: str, **extra):
    """(hot answer, DRF answer) for the same request."""
    hot = client.get(url, **extra)
    with override_settings(HOT_PATHS=False):
        drf = client.get(url, **extra)
    return hot, drf


def _same_answer(hot, drf) -> None:
    assert hot.status_code == drf.status_code
    assert hot.content == drf.content
    for header in COMPARED_HEADERS:
        assert hot.get(header) == drf.get(header), header


def test_a_customer_is_answered_as_drf_answers_it(api, tenant):
    customer = CustomerFactory(
        tenant=tenant,
        email="ada@example.com",
        name="Ada Lovelace Ünïcode \u2028 sep",
        standard_tax_rate=Decimal("19.00"),
        metadata={"crm": {"id": 7}, "tags": ["a", "b"]},
        currency="EUR",
    )
    hot, drf = _both_paths(api, f"/api/v1/customers/{customer.pk}")

    _same_answer(hot, drf)
    body = hot.json()
    assert body["id"] == str(customer.pk)
    assert body["name"] == "Ada Lovelace Ünïcode \u2028 sep"
    assert body["standard_tax_rate"] == "19"
    assert body["metadata"] == {"crm": {"id": 7}, "tags": ["a", "b"]}
    assert body["default_namespace"] == customer.default_namespace.name
    assert_matches_schema(hot, "get", "/api/v1/customers/{id}")


def test_the_hot_path_makes_one_statement(api, tenant, django_assert_num_queries):
    customer = CustomerFactory(tenant=tenant, email="one@example.com")
    api.get(f"/api/v1/customers/{customer.pk}")  # records the key's first use
    with django_assert_num_queries(1):
        response = api.get(f"/api/v1/customers/{customer.pk}")
    assert response.status_code == 200


@pytest.mark.parametrize("customer_id", ["missing", "not-a-uuid", "other-tenant"])
def test_not_found_is_the_same_404(api, tenant, other_tenant, customer_id):
    if customer_id == "missing":
        customer_id = "01a2022e-5599-7b39-aa0f-23229d4359cc"
    elif customer_id == "other-tenant":
        customer_id = CustomerFactory(tenant=other_tenant, email="theirs@example.com").pk
    hot, drf = _both_paths(api, f"/api/v1/customers/{customer_id}")
    _same_answer(hot, drf)
    assert_error_body(hot, 404)


def test_refused_keys_are_refused_at_once(tenant):
    customer = CustomerFactory(tenant=tenant, email="k@example.com")
    url = f"/api/v1/customers/{customer.pk}"
    issued = api_key_create(tenant=tenant, name="soon revoked")
    client = APIClient()
    client.credentials(HTTP_X_BILLING_API_KEY=issued.clear_key)
    assert client.get(url).status_code == 200

    api_key_revoke(api_key=ApiKey.objects.get(pk=issued.api_key.pk))
    hot, drf = _both_paths(client, url)
    _same_answer(hot, drf)
    assert_error_body(hot, 403)

    expired = api_key_create(tenant=tenant, name="expired")
    ApiKey.objects.filter(pk=expired.api_key.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    client.credentials(HTTP_X_BILLING_API_KEY=expired.clear_key)
    assert_error_body(client.get(url), 403)
    client.credentials(HTTP_X_BILLING_API_KEY="bk_unknown")
    assert_error_body(client.get(url), 403)
    client.credentials()
    assert_error_body(client.get(url), 403)


def test_the_query_parameter_key_works_and_records_use(tenant):
    customer = CustomerFactory(tenant=tenant, email="q@example.com")
    issued = api_key_create(tenant=tenant, name="query")
    response = APIClient().get(f"/api/v1/customers/{customer.pk}?api_key={issued.clear_key}")
    assert response.status_code == 200
    assert response.json()["email"] == "q@example.com"
    assert ApiKey.objects.get(pk=issued.api_key.pk).last_used_at is not None


@override_settings(BILLING={"RATE_LIMIT": "3/m"})
def test_both_paths_count_in_one_bucket(api, tenant):
    customer = CustomerFactory(tenant=tenant, email="r@example.com")
    start = timezone.now().replace(second=0, microsecond=0) + dt.timedelta(minutes=1, seconds=1)
    with time_machine.travel(start, tick=False):
        assert api.get(f"/api/v1/customers/{customer.pk}").status_code == 200  # hot
        assert api.get("/api/v1/customers").status_code == 200  # DRF
        assert api.get(f"/api/v1/customers/{customer.pk}").status_code == 200  # hot
        limited = api.get(f"/api/v1/customers/{customer.pk}")
    body = assert_error_body(limited, 429)
    assert body["error"] == "Too Many Requests"
    assert 1 <= int(limited["Retry-After"]) <= 60


def test_other_methods_and_negotiation_go_to_drf(api, tenant):
    customer = CustomerFactory(tenant=tenant, email="m@example.com")
    url = f"/api/v1/customers/{customer.pk}"
    response = api.patch(url, {"name": "Renamed"}, format="json")
    assert response.status_code == 200
    assert api.get(url).json()["name"] == "Renamed"
    assert Customer.objects.get(pk=customer.pk).name == "Renamed"
    # An indented answer is DRF's to give, and so is a format override.
    indented = api.get(url, HTTP_ACCEPT="application/json; indent=2")
    assert indented.status_code == 200
    assert b'\n  "id"' in indented.content
    assert_error_body(api.get(f"{url}?format=xml"), 404)


def test_the_hot_statement_is_prepared_after_repeated_use(api, tenant):
    customer = CustomerFactory(tenant=tenant, email="p@example.com")
    for _ in range(8):
        assert api.get(f"/api/v1/customers/{customer.pk}").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%k.key_hash%"]
        )
        assert cursor.fetchone()[0] == 1


def _window_start():
    """A moment just inside a fresh rate-limit minute (django-ratelimit windows are per key)."""
    return timezone.now().replace(second=0, microsecond=0) + dt.timedelta(minutes=1, seconds=1)


@override_settings(BILLING={"RATE_LIMIT": "300/m", "RATE_LIMIT_RESERVATION": 10})
def test_reserved_counts_admit_exactly_the_limit_with_fewer_redis_exchanges(
    api, tenant, monkeypatch
):
    customer = CustomerFactory(tenant=tenant, email="reserve@example.com")
    exchanges = []
    original = hot._redis_connection
    monkeypatch.setattr(
        hot, "_redis_connection", lambda backend: exchanges.append(1) or original(backend)
    )
    url = f"/api/v1/customers/{customer.pk}"
    with time_machine.travel(_window_start(), tick=False):
        answers = [api.get(url).status_code for _ in range(301)]

    assert answers == [200] * 300 + [429]
    # 300 / minute reserves 3 counts at a time (1 % of the limit): 100 exchanges for the 300
    # answers, and a 101st whose numbers (301-303) are over the limit refuses the 301st request.
    assert len(exchanges) == 101


@override_settings(BILLING={"RATE_LIMIT": "300/m", "RATE_LIMIT_RESERVATION": 10})
def test_counts_another_thread_holds_bring_the_429_early_by_at_most_them(api, tenant, api_key):
    customer = CustomerFactory(tenant=tenant, email="held@example.com")
    url = f"/api/v1/customers/{customer.pk}"
    with time_machine.travel(_window_start(), tick=False):
        # Another worker thread answers one request and keeps the other two counts it reserved.
        other = threading.Thread(
            target=lambda: hot.RateCount(hash_api_key(api_key), "default", reserve=True).close()
        )
        other.start()
        other.join()
        admitted = 0
        while (response := api.get(url)).status_code == 200:
            admitted += 1
    assert_error_body(response, 429)
    assert admitted == 297  # 300 - the 3 numbers the other thread took


def test_limits_under_200_a_window_are_counted_one_by_one():
    assert hot._reservation_size(199) == 1
    with override_settings(BILLING={"RATE_LIMIT_RESERVATION": 10}):
        assert hot._reservation_size(1200) == 10
        assert hot._reservation_size(500) == 5
    with override_settings(BILLING={"RATE_LIMIT_RESERVATION": 1}):
        assert hot._reservation_size(1_000_000) == 1


def test_created_at_is_written_alike_at_the_edge_of_a_second(api, tenant):
    customer = CustomerFactory(tenant=tenant, email="edge@example.com")
    Customer.objects.filter(pk=customer.pk).update(
        created_at=dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC)
    )
    hot_answer, drf = _both_paths(api, f"/api/v1/customers/{customer.pk}")

    _same_answer(hot_answer, drf)
    assert hot_answer.json()["created_at"] == "2024-02-29T23:59:59Z"
