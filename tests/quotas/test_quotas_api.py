import pytest
from django.contrib.auth import get_user_model

from quotas.models import Quota
from tests.openapi import assert_error_body, assert_matches_schema
from tests.quotas.conftest import plan_limit, quota
from tests.usage.factories import event, ingest

pytestmark = pytest.mark.django_db

LIST = "/api/v1/namespaces/{ns}/quotas"
DETAIL = "/api/v1/namespaces/{ns}/quotas/{name}"


def _body(namespace, name="compute", maximum=100, **extra):
    return {
        "metadata": {"name": name, "namespace": namespace.name, "description": "d", **extra},
        "spec": {
            "resource_limits": {"api_calls": {"maximum": maximum}},
            "api_limits": {"api_calls": {"rate": 10, "unit": "per-minute"}},
        },
    }


def test_create_get_list_and_delete_a_quota(api, namespace, calls):
    url = f"/api/v1/namespaces/{namespace.name}/quotas"
    created = api.post(url, _body(namespace), format="json")
    assert created.status_code == 201, created.content
    assert_matches_schema(created, "post", LIST)
    body = created.json()
    assert body["metadata"] == {
        "name": "compute",
        "namespace": namespace.name,
        "description": "d",
        "labels": {},
        "disable": False,
    }
    assert body["spec"] == {
        "object_limits": {},
        "resource_limits": {"api_calls": {"maximum": 100}},
        "api_limits": {"api_calls": {"rate": 10, "burst": 10, "unit": "per-minute"}},
    }
    assert body["resource_version"] == "1"

    listed = api.get(url)
    assert_matches_schema(listed, "get", LIST)
    assert [q["metadata"]["name"] for q in listed.json()["items"]] == ["compute"]

    fetched = api.get(f"{url}/compute")
    assert_matches_schema(fetched, "get", DETAIL)
    assert fetched.json() == body

    again = api.post(url, _body(namespace), format="json")
    assert_error_body(again, 409)

    deleted = api.delete(f"{url}/compute")
    assert deleted.status_code == 204
    assert_error_body(api.get(f"{url}/compute"), 404)


def test_replace_with_a_stale_resource_version_is_a_conflict(api, namespace, calls):
    url = f"/api/v1/namespaces/{namespace.name}/quotas"
    api.post(url, _body(namespace), format="json")
    first = api.put(
        f"{url}/compute", {**_body(namespace, maximum=50), "resource_version": "1"}, format="json"
    )
    assert first.status_code == 200, first.content
    assert_matches_schema(first, "put", DETAIL)
    assert first.json()["resource_version"] == "2"
    assert first.json()["spec"]["resource_limits"] == {"api_calls": {"maximum": 50}}

    stale = api.put(
        f"{url}/compute", {**_body(namespace, maximum=70), "resource_version": "1"}, format="json"
    )
    assert_error_body(stale, 409)
    assert Quota.objects.get().spec["resource_limits"] == {"api_calls": {"maximum": 50}}

    unconditional = api.put(f"{url}/compute", _body(namespace, maximum=70), format="json")
    assert unconditional.status_code == 200
    assert unconditional.json()["resource_version"] == "3"


def test_invalid_quotas_are_refused(api, namespace, calls):
    url = f"/api/v1/namespaces/{namespace.name}/quotas"
    unknown = _body(namespace)
    unknown["spec"]["resource_limits"] = {"nope": {"maximum": 1}}
    body = assert_error_body(api.post(url, unknown, format="json"), 400, errors=True)
    assert "spec.resource_limits.nope" in body["errors"]

    other_namespace = _body(namespace)
    other_namespace["metadata"]["namespace"] = "elsewhere"
    assert_error_body(api.post(url, other_namespace, format="json"), 400, errors=True)

    bad_unit = _body(namespace)
    bad_unit["spec"]["api_limits"]["api_calls"]["unit"] = "per-week"
    assert_error_body(api.post(url, bad_unit, format="json"), 400, errors=True)


def test_another_tenants_namespace_and_quota_answer_404(api, other_api, namespace, calls):
    quota(namespace, resource_limits={"api_calls": {"maximum": 5}})
    base = f"/api/v1/namespaces/{namespace.name}"
    for path in (
        "/quotas",
        "/quotas/default",
        "/quota/limits",
        "/quota/usage",
        "/usage/invoices/custom_list",
        "/subscriptions/custom_list",
        "/usage_plans/current",
    ):
        assert_error_body(other_api.get(base + path), 404)
    assert_error_body(other_api.delete(base + "/quotas/default"), 404)
    assert_error_body(other_api.post(base + "/current_usage", {}, format="json"), 404)
    assert api.get(base + "/quotas/default").status_code == 200


def test_effective_limits_are_plan_defaults_overlaid_by_enabled_quotas(
    api, namespace, subscription, calls, vms, tenant
):
    plan_limit(subscription.plan, "api_calls", 1000)
    plan_limit(subscription.plan, "vms", 3)
    quota(namespace, "tighter", resource_limits={"api_calls": {"maximum": 10}})
    quota(namespace, "off", disable=True, object_limits={"vms": {"maximum": 1}})
    quota(
        namespace, "rate", api_limits={"api_calls": {"rate": 5, "burst": 5, "unit": "per-second"}}
    )
    ingest(tenant, event(subscription, "api_calls", 4), event(subscription, "vms", 2))

    limits = api.get(f"/api/v1/namespaces/{namespace.name}/quota/limits")
    assert limits.status_code == 200
    assert_matches_schema(limits, "get", "/api/v1/namespaces/{ns}/quota/limits")
    assert limits.json() == {
        "objects": {"vms": {"limit": {"maximum": 3}, "display_name": "Virtual machines"}},
        "resources": {"api_calls": {"limit": {"maximum": 10}, "display_name": "API calls"}},
        "apis": {"api_calls": {"api_limit": {"rate": 5, "burst": 5, "unit": "per-second"}}},
    }

    usage = api.get(f"/api/v1/namespaces/{namespace.name}/quota/usage")
    assert_matches_schema(usage, "get", "/api/v1/namespaces/{ns}/quota/usage")
    assert usage.json()["objects"]["vms"]["usage"] == {"current": "2"}
    assert usage.json()["resources"]["api_calls"]["usage"] == {"current": "4"}
    assert usage.json()["apis"] == limits.json()["apis"]


def test_a_staff_edit_in_the_admin_is_a_replace(api, client, namespace, calls):
    url = f"/api/v1/namespaces/{namespace.name}/quotas"
    api.post(url, _body(namespace), format="json")
    quota_row = Quota.objects.get()
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "pw"))
    edited = client.post(
        f"/admin/quotas/quota/{quota_row.pk}/change/",
        {
            "description": "raised by staff",
            "labels": "{}",
            "spec": '{"resource_limits": {"api_calls": {"maximum": 500}}}',
        },
    )
    assert edited.status_code == 302, edited.content

    fetched = api.get(f"{url}/compute").json()
    assert fetched["resource_version"] == "2"
    assert fetched["metadata"]["description"] == "raised by staff"
    assert fetched["spec"]["resource_limits"] == {"api_calls": {"maximum": 500}}
    stale = api.put(
        f"{url}/compute", {**_body(namespace, maximum=70), "resource_version": "1"}, format="json"
    )
    assert_error_body(stale, 409)
    assert Quota.objects.get().spec["resource_limits"] == {"api_calls": {"maximum": 500}}


def test_a_quota_added_in_the_admin_belongs_to_its_namespace(api, client, tenant, namespace, calls):
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "pw"))
    added = client.post(
        "/admin/quotas/quota/add/",
        {
            "tenant": tenant.pk,
            "namespace": namespace.pk,
            "name": "staff",
            "description": "",
            "labels": "{}",
            "spec": '{"object_limits": {"api_calls": {"maximum": 3}}}',
        },
    )
    assert added.status_code == 302, added.content
    fetched = api.get(f"/api/v1/namespaces/{namespace.name}/quotas/staff").json()
    assert fetched["resource_version"] == "1"
    assert fetched["spec"]["object_limits"] == {"api_calls": {"maximum": 3}}
