import pytest

from invoicing import services
from invoicing.models import Payment, PaymentMethod, Refund
from tests.invoicing.factories import issue_invoice, make_card, make_customer
from tests.openapi import assert_error_body, assert_matches_schema


@pytest.fixture
def payment(tenant):
    customer = make_customer(tenant)
    make_card(customer)
    invoice = issue_invoice(customer, amounts=(1000,))
    return services.invoice_charge(invoice=invoice).payment


def test_partial_then_full_refund(api, payment):
    url = f"/api/v1/payments/{payment.pk}/refund"
    response = api.post(
        url, {"amount": 300, "currency": "EUR", "reason": "goodwill"}, format="json"
    )
    assert response.status_code == 201
    assert_matches_schema(response, "post", "/api/v1/payments/{id}/refund")
    body = response.json()
    assert (body["amount"], body["status"], body["reason"]) == (300, "issued", "goodwill")
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == ("partially_refunded", 300)
    assert api.post(url, {"amount": 700}, format="json").status_code == 201
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == ("fully_refunded", 1000)
    listed = api.get("/api/v1/refunds").json()["data"]
    assert [r["amount"] for r in listed] == [300, 700]
    assert len(api.get(f"/api/v1/customers/{payment.customer_id}/refunds").json()["data"]) == 2


def test_a_refund_above_what_remains_is_400_and_changes_nothing(api, payment):
    services.refund_create(payment=payment, amount=600)
    response = api.post(f"/api/v1/payments/{payment.pk}/refund", {"amount": 401}, format="json")
    body = assert_error_body(response, 400, errors=True)
    assert_matches_schema(response, "post", "/api/v1/payments/{id}/refund")
    assert body["errors"]["amount"] == ["amount must not exceed what is left to refund (400)"]
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == ("partially_refunded", 600)
    assert Refund.objects.count() == 1


def test_refund_validation(api, payment):
    url = f"/api/v1/payments/{payment.pk}/refund"
    assert api.post(url, {}, format="json").status_code == 400
    assert api.post(url, {"amount": 0}, format="json").status_code == 400
    assert api.post(url, {"amount": 10, "currency": "USD"}, format="json").status_code == 400
    assert Refund.objects.count() == 0


def test_a_failed_payment_cannot_be_refunded(tenant):
    customer = make_customer(tenant)
    make_card(customer, "tok_card_declined")
    failed = services.invoice_charge(invoice=issue_invoice(customer)).payment
    assert failed.status == Payment.Status.FAILED
    with pytest.raises(services.ValidationError):
        services.refund_create(payment=failed, amount=1)


def test_payments_api_shows_receipts_and_hides_cross_tenant(api, other_api, payment):
    response = api.get(f"/api/v1/payments/{payment.pk}")
    assert_matches_schema(response, "get", "/api/v1/payments/{id}")
    body = response.json()
    assert body["status"] == "completed" and body["amount"] == 1000
    assert len(body["receipts"]) == 1
    assert other_api.get(f"/api/v1/payments/{payment.pk}").status_code == 404
    receipt = body["receipts"][0]["id"]
    download = api.get(f"/api/v1/receipts/{receipt}/download")
    assert download.status_code == 200 and download["Content-Type"] == "application/pdf"
    assert other_api.get(f"/api/v1/receipts/{receipt}/download").status_code == 404
    assert len(api.get(f"/api/v1/customers/{payment.customer_id}/payments").json()["data"]) == 1


# --- Payment methods -------------------------------------------------------------------------


def test_collection_flow_creates_a_default_card_and_never_returns_the_token(api, tenant):
    customer = make_customer(tenant)
    base = f"/api/v1/customers/{customer.pk}/payment-methods"
    started = api.post(f"{base}/start-collection")
    assert started.status_code == 201
    token = started.json()["token"]
    completed = api.post(
        f"{base}/complete-collection",
        {"token": token, "card_token": "tok_mastercard"},
        format="json",
    )
    assert completed.status_code == 201
    body = completed.json()
    assert (body["brand"], body["last_four"], body["default"]) == ("mastercard", "4444", True)
    method = PaymentMethod.objects.get()
    assert method.gateway_reference not in completed.content.decode()
    assert "gateway_reference" not in body
    # The token is one-time.
    again = api.post(
        f"{base}/complete-collection", {"token": token, "card_token": "tok_visa"}, format="json"
    )
    assert again.status_code == 400
    listed = api.get(base).json()["data"]
    assert [m["id"] for m in listed] == [str(method.pk)]


def test_collection_rejects_unknown_tokens(api, tenant):
    customer = make_customer(tenant)
    base = f"/api/v1/customers/{customer.pk}/payment-methods"
    response = api.post(
        f"{base}/complete-collection", {"token": "nope", "card_token": "tok_visa"}, format="json"
    )
    assert response.status_code == 400
    token = api.post(f"{base}/start-collection").json()["token"]
    bad_card = api.post(
        f"{base}/complete-collection", {"token": token, "card_token": "tok_bogus"}, format="json"
    )
    assert bad_card.status_code == 400
    assert "invalid_details" in bad_card.json()["message"][0]


def test_set_default_and_delete(api, other_api, tenant):
    customer = make_customer(tenant)
    first, second = make_card(customer, "tok_visa"), make_card(customer, "tok_mastercard")
    first.refresh_from_db()
    assert (first.default, second.default) == (False, True)
    response = api.post(f"/api/v1/payment-methods/{first.pk}/default")
    assert response.status_code == 200 and response.json()["default"] is True
    second.refresh_from_db()
    assert second.default is False
    nested = f"/api/v1/customers/{customer.pk}/payment-methods/{second.pk}"
    assert api.post(f"{nested}/default").json()["default"] is True
    assert other_api.delete(f"/api/v1/payment-methods/{first.pk}").status_code == 404
    assert api.delete(nested).status_code == 204
    assert api.get(f"/api/v1/payment-methods/{second.pk}").status_code == 404
    first.refresh_from_db()
    assert first.default is True
    assert api.delete(f"/api/v1/payment-methods/{first.pk}").status_code == 204
    assert api.get(f"/api/v1/customers/{customer.pk}/payment-methods").json()["data"] == []
