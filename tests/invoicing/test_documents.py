import io
import xml.etree.ElementTree as ET
from decimal import Decimal

from pypdf import PdfReader

from invoicing import pdf
from invoicing.models import Invoice
from tenants.models import TaxRule
from tests.invoicing.factories import issue_invoice, make_customer


def _text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_invoice_pdf_shows_number_lines_and_total(api, tenant):
    TaxRule.objects.create(tenant=tenant, country="DE", tax_type="standard", rate=Decimal("19"))
    tenant.tax_number, tenant.street_line_one, tenant.city = (
        "DE999999999",
        "Friedrichstr. 68",
        "Berlin",
    )
    tenant.save()
    customer = make_customer(tenant, name="Ada Lovelace", city="Hamburg", locale="de")
    invoice = issue_invoice(customer, amounts=(123456, 1000))
    response = api.get(f"/api/v1/invoices/{invoice.pk}/download")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    text = _text(response.content)
    assert "INV-000001" in text
    assert "Item 1" in text and "Item 2" in text
    assert "1.481,03 €" in text  # 124456 + 23457 + 190 tax, German formatting
    assert "DE999999999" in text and "Ada Lovelace" in text and "Hamburg" in text


def test_the_render_is_cached_by_content_and_redone_when_it_changes(tenant):
    invoice = issue_invoice(make_customer(tenant))
    first = pdf.invoice_pdf(invoice)
    digest = Invoice.objects.get(pk=invoice.pk).pdf_hash
    assert pdf.invoice_pdf(invoice) == first
    invoice.status = "paid"
    invoice.save()
    pdf.invoice_pdf(invoice)
    assert Invoice.objects.get(pk=invoice.pk).pdf_hash != digest
    assert "PAID" in _text(pdf.invoice_pdf(invoice))


def test_reverse_charge_is_noted(tenant):
    customer = make_customer(tenant, country="FR", type="business", tax_number="FR123")
    text = _text(pdf.invoice_pdf(issue_invoice(customer)))
    assert "Reverse charge" in text


def test_xrechnung_download(api, tenant):
    customer = make_customer(tenant, standard_tax_rate=Decimal("19"))
    invoice = issue_invoice(customer, amounts=(1000, 2000))
    response = api.get(f"/api/v1/invoices/{invoice.pk}/download", {"format": "xrechnung"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml"
    root = ET.fromstring(response.content)
    ns = {
        "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
        "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    }
    assert root.find("cbc:ID", ns).text == "INV-000001"
    assert "xrechnung" in root.find("cbc:CustomizationID", ns).text
    assert root.find("cac:LegalMonetaryTotal/cbc:PayableAmount", ns).text == "35.70"
    assert len(root.findall("cac:InvoiceLine", ns)) == 2
    assert api.get(f"/api/v1/invoices/{invoice.pk}/download", {"format": "doc"}).status_code == 400
