import datetime as dt
from decimal import Decimal

import pytest

from invoicing import services
from invoicing.models import Invoice, InvoiceLine, Payment
from invoicing.services import DuplicatePeriodInvoice, LineDraft
from tenants.models import TaxRule
from tests.invoicing.factories import (
    issue_invoice,
    make_card,
    make_customer,
    make_subscription,
)
from tests.openapi import assert_error_body, assert_matches_schema

UTC = dt.UTC


def test_numbers_are_gapless_per_tenant_with_the_prefix(tenant, other_tenant):
    ours = [issue_invoice(make_customer(tenant)) for _ in range(3)]
    theirs = issue_invoice(make_customer(other_tenant))
    assert [i.number for i in ours] == ["INV-000001", "INV-000002", "INV-000003"]
    assert theirs.number == "INV-000001"


def test_a_failed_issue_takes_no_number(tenant):
    customer = make_customer(tenant)
    with pytest.raises(ValueError):
        services.invoice_issue(
            customer=customer,
            currency="XXX-bad",
            lines=[LineDraft("x", "one_off", 100)],
            billing_reason="manual",
        )
    assert issue_invoice(customer).number == "INV-000001"


def test_exclusive_tax_from_the_tenant_rule_adds_up_to_the_cent(tenant):
    TaxRule.objects.create(tenant=tenant, country="DE", tax_type="standard", rate=Decimal("19"))
    invoice = issue_invoice(make_customer(tenant, country="DE"), amounts=(1005, 333, 1))
    lines = list(invoice.lines.order_by("position"))
    assert [(line.sub_total, line.tax_total, line.total) for line in lines] == [
        (1005, 191, 1196),  # 190.95 rounds half up
        (333, 63, 396),  # 63.27
        (1, 0, 1),  # 0.19
    ]
    assert (invoice.sub_total, invoice.tax_total, invoice.total) == (1339, 254, 1593)
    assert invoice.amount_due == 1593 and invoice.status == "open"


def test_inclusive_prices_have_the_tax_extracted(tenant):
    customer = make_customer(tenant, country="DE", standard_tax_rate=Decimal("19"))
    invoice = issue_invoice(customer, amounts=(1190, 1000), including_tax=True)
    lines = list(invoice.lines.order_by("position"))
    assert [(line.sub_total, line.tax_total, line.total) for line in lines] == [
        (1000, 190, 1190),
        (840, 160, 1000),
    ]
    assert invoice.total == 2190 == invoice.sub_total + invoice.tax_total


def test_eu_business_in_another_country_is_reverse_charged(tenant):
    tenant.default_tax_rate = Decimal("19")
    tenant.save()
    customer = make_customer(tenant, country="FR", type="business", tax_number="FR12345678901")
    invoice = issue_invoice(customer, amounts=(10000,))
    assert invoice.reverse_charge is True
    assert (invoice.tax_total, invoice.total) == (0, 10000)
    assert invoice.lines.get().tax_rate == 0


def test_biller_and_payee_are_snapshots(tenant):
    customer = make_customer(tenant, city="Hamburg")
    invoice = issue_invoice(customer)
    customer.city = "Köln"
    customer.save()
    invoice.refresh_from_db()
    assert invoice.payee_address["city"] == "Hamburg"
    assert invoice.biller_address["name"] == tenant.name


def test_invoice_customers_get_a_due_date_from_the_payment_terms(tenant):
    at = dt.datetime(2027, 3, 1, tzinfo=UTC)
    invoice = issue_invoice(make_customer(tenant, billing_type="invoice"), at=at)
    assert invoice.due_date == dt.date(2027, 3, 15)


def test_a_zero_invoice_is_paid_at_once(tenant):
    assert issue_invoice(make_customer(tenant), amounts=(0,)).status == "paid"


def test_one_invoice_per_subscription_period(tenant):
    customer = make_customer(tenant)
    subscription = make_subscription(customer, anchor=dt.datetime(2027, 1, 1, tzinfo=UTC))
    kwargs = dict(
        customer=customer,
        currency="EUR",
        lines=[LineDraft("Pro", "subscription", 1000)],
        subscription=subscription,
        period_start=subscription.valid_until,
        billing_reason="renewal",
    )
    first = services.invoice_issue(**kwargs)
    with pytest.raises(DuplicatePeriodInvoice) as duplicate:
        services.invoice_issue(**kwargs)
    assert duplicate.value.invoice == first
    assert Invoice.objects.count() == 1


def test_pending_lines_go_on_the_renewal_invoice(tenant):
    customer = make_customer(tenant, standard_tax_rate=Decimal("10"))
    subscription = make_subscription(customer, anchor=dt.datetime(2027, 1, 1, tzinfo=UTC))
    services.pending_line_add(
        subscription=subscription, line=LineDraft("Seat added (prorated)", "proration", 500)
    )
    invoice = services.invoice_issue(
        customer=customer,
        currency="EUR",
        lines=[LineDraft("Pro", "subscription", 1000)],
        subscription=subscription,
        period_start=subscription.valid_until,
        billing_reason="renewal",
    )
    assert sorted(line.kind for line in invoice.lines.all()) == ["proration", "subscription"]
    assert (invoice.sub_total, invoice.tax_total) == (1500, 150)
    assert not InvoiceLine.objects.filter(invoice__isnull=True).exists()


# --- API ---------------------------------------------------------------------------------------


def test_invoice_detail_and_list_filters(api, tenant, other_api):
    customer = make_customer(tenant)
    invoice = issue_invoice(customer, amounts=(1000, 250))
    issue_invoice(make_customer(tenant))
    detail = api.get(f"/api/v1/invoices/{invoice.pk}")
    assert_matches_schema(detail, "get", "/api/v1/invoices/{id}")
    body = detail.json()
    assert body["number"] == "INV-000001" and body["total"] == 1250
    assert [line["sub_total"] for line in body["lines"]] == [1000, 250]
    assert sum(line["total"] for line in body["lines"]) == body["total"]
    listed = api.get("/api/v1/invoices", {"customer": str(customer.pk)})
    assert_matches_schema(listed, "get", "/api/v1/invoices")
    assert [i["id"] for i in listed.json()["data"]] == [str(invoice.pk)]
    assert api.get("/api/v1/invoices", {"status": "paid"}).json()["data"] == []
    per_customer = api.get(f"/api/v1/customers/{customer.pk}/invoices")
    assert_matches_schema(per_customer, "get", "/api/v1/customers/{customer_id}/invoices")
    assert [i["id"] for i in per_customer.json()["data"]] == [str(invoice.pk)]
    assert_error_body(other_api.get(f"/api/v1/invoices/{invoice.pk}"), 404)
    foreign = other_api.get(f"/api/v1/customers/{customer.pk}/invoices")
    assert_error_body(foreign, 404)
    assert_matches_schema(foreign, "get", "/api/v1/customers/{customer_id}/invoices")


@pytest.mark.parametrize("count", [1, 15])
def test_invoice_list_runs_a_constant_number_of_queries(
    api, tenant, count, django_assert_num_queries
):
    customer = make_customer(tenant)
    for _ in range(count):
        issue_invoice(customer, amounts=(1000, 250))
    api.get("/api/v1/invoices")  # the key is resolved (and cached) and its use recorded once
    # Two queries: the page, and the lines of its invoices.
    with django_assert_num_queries(2):
        response = api.get("/api/v1/invoices?limit=100")
    assert [len(i["lines"]) for i in response.json()["data"]] == [2] * count


def test_invoice_list_from_to(api, tenant):
    customer = make_customer(tenant)
    issue_invoice(customer, at=dt.datetime(2027, 1, 5, tzinfo=UTC))
    march = issue_invoice(customer, at=dt.datetime(2027, 3, 5, tzinfo=UTC))
    body = api.get(
        "/api/v1/invoices", {"from": "2027-02-01T00:00:00Z", "to": "2027-04-01T00:00:00Z"}
    )
    assert [i["id"] for i in body.json()["data"]] == [str(march.pk)]


def test_charge_succeeds_with_the_card_on_file(api, tenant):
    customer = make_customer(tenant)
    make_card(customer, "tok_visa")
    invoice = issue_invoice(customer)
    response = api.post(f"/api/v1/invoices/{invoice.pk}/charge")
    assert response.status_code == 200
    assert response.json() == {"paid": True, "failure_reason": None}
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid, invoice.amount_due) == ("paid", True, 0)
    payment = Payment.objects.get()
    assert payment.status == "completed" and payment.receipts.count() == 1
    assert payment.idempotency_key == str(invoice.pk)
    # Charging a paid invoice again charges nothing.
    assert api.post(f"/api/v1/invoices/{invoice.pk}/charge").json()["paid"] is True
    assert Payment.objects.count() == 1


def test_a_declined_charge_is_402_and_the_invoice_stays_open(api, tenant):
    customer = make_customer(tenant)
    make_card(customer, "tok_expired_card")
    invoice = issue_invoice(customer)
    response = api.post(f"/api/v1/invoices/{invoice.pk}/charge")
    body = assert_error_body(response, 402)
    assert_matches_schema(response, "post", "/api/v1/invoices/{id}/charge")
    assert body["paid"] is False and body["failure_reason"] == "expired_card"
    invoice.refresh_from_db()
    assert invoice.status == "open"
    assert Payment.objects.get().status == "failed"
    # A new attempt is a new gateway call with its own key.
    make_card(customer, "tok_visa")
    assert api.post(f"/api/v1/invoices/{invoice.pk}/charge").status_code == 200
    assert sorted(Payment.objects.values_list("idempotency_key", flat=True)) == sorted(
        [str(invoice.pk), f"{invoice.pk}:1"]
    )


def test_void_and_mark_paid_transitions(api, tenant):
    customer = make_customer(tenant)
    invoice = issue_invoice(customer)
    response = api.post(f"/api/v1/invoices/{invoice.pk}/void")
    assert_matches_schema(response, "post", "/api/v1/invoices/{id}/void")
    body = response.json()
    assert (body["status"], body["amount_due"], body["total"]) == ("void", 0, 1000)
    refused = api.post(f"/api/v1/invoices/{invoice.pk}/mark-paid")
    assert_error_body(refused, 409)
    assert_matches_schema(refused, "post", "/api/v1/invoices/{id}/mark-paid")
    assert api.post(f"/api/v1/invoices/{invoice.pk}/charge").status_code == 409
    assert api.post(f"/api/v1/invoices/{invoice.pk}/void").status_code == 409

    other = issue_invoice(customer)
    body = api.post(f"/api/v1/invoices/{other.pk}/mark-paid").json()
    assert (body["status"], body["paid"], body["amount_due"]) == ("paid", True, 0)
    assert api.post(f"/api/v1/invoices/{other.pk}/void").status_code == 409


def test_numbers_are_kept_by_voided_invoices(tenant):
    customer = make_customer(tenant)
    services.invoice_void(invoice=issue_invoice(customer))
    assert issue_invoice(customer).number == "INV-000002"
