import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from invoicing import services as invoicing_services
from subscriptions.models import PlanLimit, VoucherRedemption
from tests.factories import CustomerFactory
from tests.openapi import assert_error_body, assert_matches_schema
from tests.subscriptions.conftest import MID
from tests.subscriptions.factories import (
    FeatureFactory,
    PriceFactory,
    ProductFactory,
    VoucherFactory,
    make_plan,
)

pytestmark = pytest.mark.django_db


def start(api, customer, **body):
    response = api.post(f"/api/v1/customers/{customer.id}/subscriptions", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_list_filters_and_patch(api, tenant, clock, invoice_customer, plan_and_price):
    plan, _ = plan_and_price
    other_customer = CustomerFactory(tenant=tenant, billing_type="invoice")
    first = start(api, invoice_customer, subscription_plan="pro")
    second = start(api, other_customer, subscription_plan="pro")
    api.post(f"/api/v1/subscriptions/{second['id']}/cancel", {"when": "instantly"}, format="json")

    listed = api.get("/api/v1/subscriptions")
    assert_matches_schema(listed, "get", "/api/v1/subscriptions")
    assert [s["id"] for s in listed.json()["data"]] == [first["id"], second["id"]]
    assert [s["id"] for s in api.get("/api/v1/subscriptions?status=cancelled").json()["data"]] == [
        second["id"]
    ]
    by_customer = api.get(f"/api/v1/subscriptions?customer={invoice_customer.id}").json()["data"]
    assert [s["id"] for s in by_customer] == [first["id"]]
    assert len(api.get("/api/v1/subscriptions?plan=pro").json()["data"]) == 2
    assert len(api.get(f"/api/v1/subscriptions?plan={plan.id}").json()["data"]) == 2

    response = api.patch(
        f"/api/v1/subscriptions/{first['id']}",
        {"metadata": {"crm": "42"}, "main_external_reference": "ext-1", "status": "cancelled"},
        format="json",
    )
    assert response.status_code == 200
    assert_matches_schema(response, "patch", "/api/v1/subscriptions/{id}")
    body = response.json()
    assert (body["metadata"], body["main_external_reference"], body["status"]) == (
        {"crm": "42"},
        "ext-1",
        "active",
    )
    detail = api.get(f"/api/v1/subscriptions/{first['id']}")
    assert_matches_schema(detail, "get", "/api/v1/subscriptions/{id}")


def test_items_add_addon_prorated_update_and_remove(
    api, tenant, clock, invoice_customer, plan_and_price
):
    subscription = start(api, invoice_customer, subscription_plan="pro")
    addon = PriceFactory(
        tenant=tenant, product=ProductFactory(tenant=tenant, name="Backup"), amount=310
    )
    clock.move_to(MID)

    url = f"/api/v1/subscriptions/{subscription['id']}/items"
    response = api.post(
        url, {"item_type": "addon", "price": str(addon.id), "quantity": 2}, format="json"
    )
    assert response.status_code == 201, response.content
    assert_matches_schema(response, "post", "/api/v1/subscriptions/{id}/items")
    item = response.json()
    assert (item["item_type"], item["quantity"], item["unit_price"]) == ("addon", 2, "310")
    from invoicing.models import InvoiceLine

    # 620 for the 16 days left of 31: 320.
    assert list(
        InvoiceLine.objects.filter(invoice__isnull=True).values_list("sub_total", flat=True)
    ) == [320]

    listed = api.get(url)
    assert_matches_schema(listed, "get", "/api/v1/subscriptions/{id}/items")
    assert [i["item_type"] for i in listed.json()["data"]] == ["plan", "usage", "addon"]

    item_url = f"/api/v1/subscription-items/{item['id']}"
    response = api.patch(
        item_url, {"description": "Nightly backup", "comment": "sales deal"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert_matches_schema(response, "patch", "/api/v1/subscription-items/{item_id}")
    assert response.json()["description"] == "Nightly backup"
    assert response.json()["active_range"] == {"start": "2026-01-16T00:00:00Z", "end": None}
    assert api.patch(item_url, {"description": ""}, format="json").status_code == 400

    assert api.delete(item_url).status_code == 204
    assert api.get(item_url).json()["active_to"] == "2026-01-16T00:00:00Z"
    plan_item = listed.json()["data"][0]
    assert api.delete(f"/api/v1/subscription-items/{plan_item['id']}").status_code == 409


def test_addon_in_another_currency_is_400(api, tenant, clock, invoice_customer, plan_and_price):
    subscription = start(api, invoice_customer, subscription_plan="pro")
    usd = PriceFactory(tenant=tenant, currency="USD")
    response = api.post(
        f"/api/v1/subscriptions/{subscription['id']}/items",
        {"item_type": "addon", "price": str(usd.id)},
        format="json",
    )
    body = assert_error_body(response, 400, errors=True)
    assert body["errors"] == {"price": ["price must be in the subscription's currency"]}
    items = api.get(f"/api/v1/subscriptions/{subscription['id']}/items").json()["data"]
    assert [item["item_type"] for item in items] == ["plan", "usage"]


def test_payment_method_put(api, tenant, clock, card_customer, plan_and_price):
    subscription = start(api, card_customer, subscription_plan="pro", card_token="tok_visa")
    card = invoicing_services.payment_method_from_card_token(
        customer=card_customer, card_token="tok_mastercard"
    )
    url = f"/api/v1/subscriptions/{subscription['id']}/payment-method"
    response = api.put(url, {"payment_method": str(card.id)}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["payment_method"] == str(card.id)
    stranger = invoicing_services.payment_method_from_card_token(
        customer=CustomerFactory(tenant=tenant), card_token="tok_visa"
    )
    assert api.put(url, {"payment_method": str(stranger.id)}, format="json").status_code == 400


def test_limits_sum_plan_and_addon(api, tenant, clock, invoice_customer):
    storage = FeatureFactory(tenant=tenant, code="storage_gb", name="Storage")
    sso = FeatureFactory(tenant=tenant, code="sso", name="SSO", description="Single sign-on")
    team, _ = make_plan(tenant, code_name="team", per_seat=True)
    team.features.add(sso, storage)
    PlanLimit.objects.create(tenant=tenant, plan=team, feature=storage, limit=100)
    extra, _ = make_plan(tenant, code_name="extra-storage", user_count=0)
    PlanLimit.objects.create(tenant=tenant, plan=extra, feature=storage, limit=50)
    start(api, invoice_customer, subscription_plan="team", seat_number=4)
    start(api, invoice_customer, subscription_plan="extra-storage")

    response = api.get(f"/api/v1/customers/{invoice_customer.id}/limits")
    assert response.status_code == 200
    assert_matches_schema(response, "get", "/api/v1/customers/{customer_id}/limits")
    assert response.json() == {
        "limits": [{"feature": {"code": "storage_gb", "name": "Storage"}, "limit": 150}],
        "features": [
            {"id": str(sso.id), "code": "sso", "name": "SSO", "description": "Single sign-on"},
            {"id": str(storage.id), "code": "storage_gb", "name": "Storage", "description": ""},
        ],
        "user_count": 4,
    }


def test_percentage_voucher_discounts_the_first_invoice(
    api, tenant, clock, invoice_customer, plan_and_price
):
    VoucherFactory(tenant=tenant, code="QUARTER", percentage=25)
    api.post(
        f"/api/v1/customers/{invoice_customer.id}/vouchers", {"code": "QUARTER"}, format="json"
    )
    subscription = start(api, invoice_customer, subscription_plan="pro")
    from invoicing.models import Invoice

    invoice = Invoice.objects.get(subscription_id=subscription["id"])
    assert invoice.total == 750
    assert VoucherRedemption.objects.get().active is False


def test_other_tenants_ids_are_404(api, other_api, tenant, clock, invoice_customer, plan_and_price):
    plan, price = plan_and_price
    subscription = start(api, invoice_customer, subscription_plan="pro")
    item_id = api.get(f"/api/v1/subscriptions/{subscription['id']}/items").json()["data"][0]["id"]
    customer = invoice_customer.id
    for path in [
        f"/api/v1/subscriptions/{subscription['id']}",
        f"/api/v1/subscriptions/{subscription['id']}/items",
        f"/api/v1/subscription-items/{item_id}",
        f"/api/v1/customers/{customer}/subscriptions",
        f"/api/v1/customers/{customer}/subscriptions/active",
        f"/api/v1/customers/{customer}/subscriptions/pro/quantity",
        f"/api/v1/customers/{customer}/limits",
        f"/api/v1/subscription-plans/{plan.id}",
        "/api/v1/subscription-plans/pro",
        f"/api/v1/products/{plan.product_id}",
        f"/api/v1/prices/{price.id}",
    ]:
        assert other_api.get(path).status_code == 404, path
    for path, body in [
        (f"/api/v1/subscriptions/{subscription['id']}/cancel", {"when": "instantly"}),
        (f"/api/v1/subscriptions/{subscription['id']}/seats/add", {"seats": 1}),
        (f"/api/v1/customers/{customer}/vouchers", {"code": "X"}),
        (f"/api/v1/customers/{customer}/subscriptions", {"subscription_plan": "pro"}),
    ]:
        assert other_api.post(path, body, format="json").status_code == 404, path
    assert other_api.get("/api/v1/subscriptions").json()["data"] == []
    # A price of another tenant cannot be used either.
    response = other_api.post(
        "/api/v1/products/" + str(plan.product_id) + "/prices",
        {"amount": 1, "currency": "EUR", "recurring": False},
        format="json",
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/subscriptions",
        "/api/v1/customers/{customer}/subscriptions",
        "/api/v1/subscription-plans",
        "/api/v1/products",
        "/api/v1/vouchers",
        "/api/v1/features",
    ],
)
def test_list_queries_do_not_grow_with_rows(
    api, tenant, clock, invoice_customer, django_assert_num_queries, path
):
    def add_rows():
        plan, _ = make_plan(tenant, code_name=f"p{PlanLimit.objects.count()}-{id(object())}")
        feature = FeatureFactory(tenant=tenant)
        plan.features.add(feature)
        PlanLimit.objects.create(tenant=tenant, plan=plan, feature=feature, limit=1)
        VoucherFactory(tenant=tenant)
        start(api, invoice_customer, subscription_plan=plan.code_name)

    url = path.format(customer=invoice_customer.id)
    add_rows()
    api.get(url)  # the API key's last_used_at is written on the first request only
    connection.queries_log.clear()  # a full log (9000 entries) would capture nothing
    with CaptureQueriesContext(connection) as one_row:
        assert api.get(url).status_code == 200
    expected = len(one_row)
    for _ in range(3):
        add_rows()
    connection.queries_log.clear()
    with django_assert_num_queries(expected):
        response = api.get(url)
    assert len(response.json()["data"]) >= 4
