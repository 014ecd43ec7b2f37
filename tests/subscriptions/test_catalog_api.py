import pytest

from subscriptions.models import Price, SubscriptionPlan
from tests.openapi import assert_matches_schema
from tests.subscriptions.factories import FeatureFactory, ProductFactory, VoucherFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def product(tenant):
    return ProductFactory(tenant=tenant, name="Cloud")


def test_product_create_list_filter_and_update(api, tenant):
    response = api.post(
        "/api/v1/products", {"name": "Cloud Storage", "tax_type": "digital"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert_matches_schema(response, "post", "/api/v1/products")
    product = response.json()
    assert product["tax_type"] == "digital"
    api.post("/api/v1/products", {"name": "Support"}, format="json")

    listed = api.get("/api/v1/products", {"name": "storage"})
    assert_matches_schema(listed, "get", "/api/v1/products")
    assert [p["name"] for p in listed.json()["data"]] == ["Cloud Storage"]

    response = api.patch(f"/api/v1/products/{product['id']}", {"name": "Storage"}, format="json")
    assert response.json()["name"] == "Storage"
    assert api.post("/api/v1/products", {}, format="json").json()["errors"] == {
        "name": ["name should not be empty"]
    }


def test_price_create_with_tiers(api, product):
    response = api.post(
        f"/api/v1/products/{product.id}/prices",
        {
            "amount": 0,
            "currency": "eur",
            "recurring": True,
            "schedule": "month",
            "type": "tiered_graduated",
            "tiers": [
                {"first_unit": 1, "last_unit": 5, "unit_price": "0.0125", "flat_fee": 100},
                {"first_unit": 6, "last_unit": None, "unit_price": "1"},
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert_matches_schema(response, "post", "/api/v1/products/{id}/prices")
    body = response.json()
    assert body["currency"] == "EUR"
    assert body["product"] == str(product.id)
    assert body["tiers"][0]["unit_price"] == "0.0125"
    assert body["tiers"][1] == {
        "first_unit": 6,
        "last_unit": None,
        "unit_price": "1",
        "flat_fee": 0,
    }
    listed = api.get(f"/api/v1/products/{product.id}/prices")
    assert_matches_schema(listed, "get", "/api/v1/products/{id}/prices")
    assert [p["id"] for p in listed.json()["data"]] == [body["id"]]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"amount": 100, "currency": "EUR", "recurring": True},
            "schedule",
            "schedule must be week, month or year when the price is recurring",
        ),
        (
            {"amount": 100, "currency": "EURO", "recurring": False},
            "currency",
            "currency: EURO is not an ISO 4217 currency code",
        ),
        (
            {"amount": 100, "currency": "XAU", "recurring": False},
            "currency",
            "currency: XAU is not an ISO 4217 currency code",
        ),
        (
            {"amount": 0, "currency": "EUR", "recurring": False, "type": "tiered_volume"},
            "tiers",
            "tiers are required for a tiered_volume price",
        ),
        (
            {
                "amount": 0,
                "currency": "EUR",
                "recurring": False,
                "type": "tiered_volume",
                "tiers": [
                    {"first_unit": 1, "last_unit": 5, "unit_price": "1"},
                    {"first_unit": 7, "last_unit": None, "unit_price": "1"},
                ],
            },
            "tiers",
            "tiers[1].first_unit must be 6 (tiers must be contiguous)",
        ),
        (
            {"amount": 0, "currency": "EUR", "recurring": False, "type": "package"},
            "units",
            "units (the package size, at least 1) are required for a package price",
        ),
        (
            {"amount": -1, "currency": "EUR", "recurring": False},
            "amount",
            "amount: Ensure this value is greater than or equal to 0.",
        ),
        (
            {"amount": 1, "currency": "EUR", "recurring": False, "usage": True},
            "metric",
            "metric is required for a usage price",
        ),
    ],
)
def test_price_validation(api, product, body, field, message):
    response = api.post(f"/api/v1/products/{product.id}/prices", body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][field] == [message]
    assert not Price.objects.exists()


def test_price_in_use_keeps_its_billing_terms(api, tenant, invoice_customer, plan_and_price):
    _, price = plan_and_price
    api.post(
        f"/api/v1/customers/{invoice_customer.id}/subscriptions",
        {"subscription_plan": "pro"},
        format="json",
    )
    response = api.patch(f"/api/v1/prices/{price.id}", {"amount": 2000}, format="json")
    assert response.status_code == 409
    response = api.patch(f"/api/v1/prices/{price.id}", {"public": False}, format="json")
    assert response.status_code == 200
    assert_matches_schema(response, "patch", "/api/v1/prices/{id}")
    assert response.json()["public"] is False


def test_plan_create_by_feature_codes_and_fetch_by_code_name(api, tenant, product):
    storage = FeatureFactory(tenant=tenant, code="storage_gb")
    sso = FeatureFactory(tenant=tenant, code="sso")
    price = Price.objects.create(
        tenant=tenant, product=product, amount=900, currency="EUR", schedule="month"
    )
    response = api.post(
        "/api/v1/subscription-plans",
        {
            "name": "Team",
            "code_name": "team",
            "product": str(product.id),
            "per_seat": True,
            "features": ["sso", str(storage.id)],
            "limits": [{"feature": "storage_gb", "limit": 100}],
            "prices": [str(price.id)],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert_matches_schema(response, "post", "/api/v1/subscription-plans")
    body = response.json()
    assert sorted(body["features"]) == sorted([str(sso.id), str(storage.id)])
    assert body["limits"] == [{"feature": str(storage.id), "limit": 100}]
    assert body["prices"] == [str(price.id)]

    by_code = api.get("/api/v1/subscription-plans/team")
    assert_matches_schema(by_code, "get", "/api/v1/subscription-plans/{id}")
    assert by_code.json()["id"] == body["id"]
    patched = api.patch("/api/v1/subscription-plans/team", {"limits": []}, format="json")
    assert patched.json()["limits"] == []

    duplicate = api.post(
        "/api/v1/subscription-plans",
        {"name": "Again", "code_name": "team", "product": str(product.id)},
        format="json",
    )
    assert duplicate.status_code == 400
    assert duplicate.json()["errors"] == {
        "code_name": ["code_name is already used by another plan"]
    }
    unknown = api.post(
        "/api/v1/subscription-plans",
        {"name": "X", "code_name": "x", "product": str(product.id), "features": ["nope"]},
        format="json",
    )
    assert unknown.status_code == 400
    assert SubscriptionPlan.objects.count() == 1


def test_features_unique_code(api):
    assert (
        api.post("/api/v1/features", {"code": "sso", "name": "SSO"}, format="json").status_code
        == 201
    )
    response = api.post("/api/v1/features", {"code": "sso", "name": "Again"}, format="json")
    assert response.status_code == 400
    listed = api.get("/api/v1/features")
    assert_matches_schema(listed, "get", "/api/v1/features")


def test_voucher_create_validation_and_apply(api, tenant, invoice_customer):
    response = api.post("/api/v1/vouchers", {"code": "HALF", "type": "percentage"}, format="json")
    assert response.status_code == 400
    assert "percentage" in response.json()["errors"]
    response = api.post(
        "/api/v1/vouchers",
        {"code": "CREDIT", "type": "fixed_credit", "duration": "repeating"},
        format="json",
    )
    assert set(response.json()["errors"]) == {"amounts", "duration_in_cycles"}

    response = api.post(
        "/api/v1/vouchers",
        {"code": "HALF", "type": "percentage", "percentage": "50", "max_redemptions": 1},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert_matches_schema(response, "post", "/api/v1/vouchers")

    url = f"/api/v1/customers/{invoice_customer.id}/vouchers"
    applied = api.post(url, {"code": "HALF"}, format="json")
    assert applied.status_code == 201, applied.content
    assert_matches_schema(applied, "post", "/api/v1/customers/{customer_id}/vouchers")
    assert applied.json()["voucher"]["code"] == "HALF"
    assert applied.json()["remaining_cycles"] == 1

    from tests.factories import CustomerFactory

    other = CustomerFactory(tenant=tenant)
    exhausted = api.post(f"/api/v1/customers/{other.id}/vouchers", {"code": "HALF"}, format="json")
    assert exhausted.status_code == 400
    assert exhausted.json()["errors"] == {"code": ["code has been redeemed as often as it may be"]}
    VoucherFactory(tenant=tenant, code="OFF", disabled=True)
    disabled = api.post(url, {"code": "OFF"}, format="json")
    assert disabled.json()["errors"] == {"code": ["code is a disabled voucher"]}
    unknown = api.post(url, {"code": "NOPE"}, format="json")
    assert unknown.json()["errors"] == {"code": ["code is not a known voucher"]}
