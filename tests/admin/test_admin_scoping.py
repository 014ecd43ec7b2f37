"""The admin's tenancy (DESIGN, Tenancy and security): staff see only the tenants they are
members of; superusers see everything."""

import re

import pytest
from django.contrib.auth import get_user_model

from tenants.models import ApiKey, hash_api_key

pytestmark = pytest.mark.django_db

CHANGELISTS = {
    "customers": ("/admin/customers/customer/", "{p}-customer@example.com"),
    "namespaces": ("/admin/customers/namespace/", "{p}-extra"),
    "api keys": ("/admin/tenants/apikey/", "{p}-key"),
}


@pytest.mark.parametrize("changelist", CHANGELISTS)
def test_staff_member_sees_only_their_tenants_rows(
    client, staff_of_tenant, two_tenants_data, changelist
):
    url, marker = CHANGELISTS[changelist]
    client.force_login(staff_of_tenant)
    html = client.get(url).content.decode()
    assert marker.format(p="a") in html
    assert marker.format(p="b") not in html
    assert "Globex" not in html  # not even the other tenant's name, e.g. in the list filter


@pytest.mark.parametrize("changelist", CHANGELISTS)
def test_superuser_sees_every_tenants_rows(client, superuser, two_tenants_data, changelist):
    url, marker = CHANGELISTS[changelist]
    client.force_login(superuser)
    html = client.get(url).content.decode()
    assert marker.format(p="a") in html
    assert marker.format(p="b") in html


def test_staff_member_cannot_open_another_tenants_customer(
    client, staff_of_tenant, two_tenants_data
):
    client.force_login(staff_of_tenant)
    own = client.get(f"/admin/customers/customer/{two_tenants_data['a'].pk}/change/")
    assert own.status_code == 200
    assert "a-extra" in own.content.decode()  # the namespaces inline is shown to tenant staff
    other = client.get(f"/admin/customers/customer/{two_tenants_data['b'].pk}/change/", follow=True)
    assert "b-customer@example.com" not in other.content.decode()
    assert "doesn\u2019t exist" in other.content.decode()  # the admin's own notice


def test_staff_member_sees_only_their_tenant(client, staff_of_tenant, two_tenants_data):
    client.force_login(staff_of_tenant)
    html = client.get("/admin/tenants/tenant/").content.decode()
    assert "Acme Cloud" in html and "Globex" not in html
    add_form = client.get("/admin/tenants/apikey/add/").content.decode()
    assert "Acme Cloud" in add_form and "Globex" not in add_form


def test_staff_without_membership_sees_no_billing_data(client, two_tenants_data):
    loner = get_user_model().objects.create_user("loner", password="x" * 20, is_staff=True)
    client.force_login(loner)
    assert client.get("/admin/customers/customer/").status_code == 403
    assert "Customers" not in client.get("/admin/").content.decode()


def test_creating_an_api_key_shows_the_clear_key_once(client, staff_of_tenant, tenant):
    client.force_login(staff_of_tenant)
    response = client.post(
        "/admin/tenants/apikey/add/",
        {"tenant": str(tenant.pk), "name": "from-admin", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )
    html = response.content.decode()
    shown = re.findall(r"bk_[A-Za-z0-9_\-]{40,}", html)
    assert len(set(shown)) == 1, html
    key = ApiKey.objects.get(name="from-admin")
    assert key.key_hash == hash_api_key(shown[0])
    # Never again: not on the list, not on the key's own page.
    for url in ("/admin/tenants/apikey/", f"/admin/tenants/apikey/{key.pk}/change/"):
        assert shown[0] not in client.get(url).content.decode()


def test_staff_member_cannot_create_a_key_for_another_tenant(client, staff_of_tenant, other_tenant):
    client.force_login(staff_of_tenant)
    response = client.post(
        "/admin/tenants/apikey/add/",
        {"tenant": str(other_tenant.pk), "name": "sneaky", "expires_at_0": "", "expires_at_1": ""},
    )
    assert response.status_code == 200  # the form again, with an error
    assert not ApiKey.objects.filter(name="sneaky").exists()
