import pytest
from django.contrib.auth import get_user_model

from customers.services import namespace_create
from tenants.models import TenantMembership
from tests.factories import CustomerFactory, make_api_key

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def staff_of_tenant(tenant):
    """A staff user (no Django permissions) who is a member of `tenant` only."""
    user = get_user_model().objects.create_user(
        "staff-a", email="staff-a@acme.example", password=PASSWORD, is_staff=True
    )
    TenantMembership.objects.create(user=user, tenant=tenant)
    return user


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser(
        "root", email="root@platform.example", password=PASSWORD
    )


@pytest.fixture
def two_tenants_data(tenant, other_tenant):
    """Each tenant with a customer, an extra namespace and a named API key."""
    data = {}
    for owner, prefix in ((tenant, "a"), (other_tenant, "b")):
        customer = CustomerFactory(tenant=owner, email=f"{prefix}-customer@example.com")
        namespace_create(tenant=owner, customer=customer, name=f"{prefix}-extra")
        make_api_key(owner, name=f"{prefix}-key")
        data[prefix] = customer
    return data
