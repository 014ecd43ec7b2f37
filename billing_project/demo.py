"""The demo tenant that `make run` starts with: each section seeds one app's part of the story.
It goes through the same services as the API, so the demo data is what an integrator would make."""

from customers.models import Customer
from customers.services import customer_create
from tenants.models import Tenant
from tenants.services import api_key_create, tenant_create

DEMO_SLUG = "demo"

DEMO_CUSTOMERS = [
    {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "reference": "cust-ada",
        "country": "GB",
        "city": "London",
        "billing_type": Customer.BillingType.CARD,
    },
    {
        "email": "billing@acme.example",
        "name": "Acme GmbH",
        "company_name": "Acme GmbH",
        "type": Customer.Type.BUSINESS,
        "tax_number": "DE123456789",
        "reference": "cust-acme",
        "country": "DE",
        "city": "Berlin",
        "street_line_one": "Unter den Linden 1",
        "postcode": "10117",
        "billing_type": Customer.BillingType.INVOICE,
    },
    {
        "email": "kenji@example.jp",
        "name": "Kenji Sato",
        "reference": "cust-kenji",
        "country": "JP",
        "currency": "JPY",
        "billing_type": Customer.BillingType.CARD,
    },
]


def seed_tenant() -> Tenant:
    tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
    if tenant is None:
        tenant = tenant_create(
            slug=DEMO_SLUG,
            name="Demo Cloud Ltd",
            currency="EUR",
            country="DE",
            timezone_name="Europe/Berlin",
        )
        tenant.street_line_one, tenant.city, tenant.postcode = "Friedrichstr. 68", "Berlin", "10117"
        tenant.tax_number, tenant.dunning_retry_days = "DE999999999", [1, 3, 5]
        tenant.save()
    return tenant


def seed_customers(tenant: Tenant) -> list[Customer]:
    customers = []
    for fields in DEMO_CUSTOMERS:
        existing = Customer.objects.for_tenant(tenant).filter(email=fields["email"]).first()
        customers.append(existing or customer_create(tenant=tenant, **fields))
    return customers


SECTIONS = [seed_customers]


def seed_demo() -> tuple[Tenant, str]:
    """Seed (or top up) the demo tenant; returns it with a fresh clear API key."""
    tenant = seed_tenant()
    for section in SECTIONS:
        section(tenant)
    issued = api_key_create(tenant=tenant, name="demo")
    return tenant, issued.clear_key
