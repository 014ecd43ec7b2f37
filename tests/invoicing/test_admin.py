"""Staff refund payments in the admin: the action asks for the amount first, then refunds
through the service (never more than is left)."""

import datetime as dt

import pytest
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.utils import timezone

from invoicing import services
from invoicing.models import Payment, Refund
from tenants.models import TenantMembership
from tests.invoicing.factories import issue_invoice, make_card, make_customer

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/invoicing/payment/"


@pytest.fixture
def staff_client(client, tenant):
    user = get_user_model().objects.create_user("billing", password="pw-123456", is_staff=True)
    TenantMembership.objects.create(user=user, tenant=tenant)
    client.force_login(user)
    return client


@pytest.fixture
def payment(tenant):
    customer = make_customer(tenant)
    method = make_card(customer)
    invoice = issue_invoice(customer, amounts=(2000,))
    assert services.invoice_charge(invoice=invoice, payment_method=method).paid
    return Payment.objects.get(invoice=invoice)


def _action(client, payment, **fields):
    return client.post(
        CHANGELIST,
        {"action": "refund_payments", helpers.ACTION_CHECKBOX_NAME: [str(payment.pk)], **fields},
    )


def test_refund_action_asks_for_the_amount_then_refunds_it(staff_client, payment):
    page = _action(staff_client, payment)
    assert page.status_code == 200
    assert b"Refund these payments" in page.content
    assert b"paid 2000 EUR" in page.content
    assert not Refund.objects.exists(), "nothing is refunded before the staff member confirms"

    done = _action(staff_client, payment, apply="Refund", amount="500", reason="Goodwill")
    assert done.status_code == 302
    refund = Refund.objects.get()
    assert (refund.amount, refund.reason, refund.billing_admin) == (500, "Goodwill", "billing")
    payment.refresh_from_db()
    assert (payment.refunded_amount, payment.status) == (500, "partially_refunded")

    # Empty amount: all that is left.
    _action(staff_client, payment, apply="Refund", amount="")
    payment.refresh_from_db()
    assert (payment.refunded_amount, payment.status) == (2000, "fully_refunded")


def test_refund_action_never_refunds_more_than_is_left(staff_client, payment):
    response = _action(staff_client, payment, apply="Refund", amount="2500")
    assert response.status_code == 302
    assert not Refund.objects.exists()
    payment.refresh_from_db()
    assert payment.refunded_amount == 0
    shown = staff_client.get(CHANGELIST).content.decode()
    assert "must not exceed what is left to refund (2000)" in shown


def test_revenue_chart_shows_paid_invoices_of_the_staff_members_tenants(
    staff_client, tenant, other_tenant, payment
):
    # A second paid invoice this month, one of another tenant, and an unpaid one: not counted.
    customer = payment.customer
    second = issue_invoice(customer, amounts=(1234,))
    services.invoice_charge(invoice=second, payment_method=payment.payment_method)
    issue_invoice(customer, amounts=(999,))
    foreign = make_customer(other_tenant)
    services.invoice_charge(
        invoice=issue_invoice(foreign, amounts=(777,)), payment_method=make_card(foreign)
    )

    page = staff_client.get("/admin/invoicing/invoice/revenue/")
    assert page.status_code == 200
    html = page.content.decode()
    month = timezone.now().astimezone(dt.UTC).strftime("%Y-%m")
    assert month in html
    assert "€32.34" in html, "2000 + 1234 EUR cents, paid this month"
    assert "€7.77" not in html and "€9.99" not in html
    invoices_page = staff_client.get("/admin/invoicing/invoice/").content.decode()
    assert 'href="/admin/invoicing/invoice/revenue/"' in invoices_page
