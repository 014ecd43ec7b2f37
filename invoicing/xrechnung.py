"""XRechnung (EN 16931, UBL 2.1 syntax) for customers whose `invoice_format` is xrechnung: the
invoice's snapshot as the German public sector's e-invoice XML. Discounts are document-level
allowances, since EN 16931 forbids negative prices."""

from collections import defaultdict
from decimal import Decimal
from xml.etree.ElementTree import Element, SubElement, tostring

from billing_project.billing_math import currency_exponent
from invoicing.models import Invoice, InvoiceLine

UBL = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CUSTOMIZATION = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
PROFILE = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
INVOICE_TYPE_COMMERCIAL = "380"
UNIT_PIECE = "C62"


def _cbc(parent, name, text=None, **attrs):
    element = SubElement(parent, f"{{{CBC}}}{name}", attrs)
    if text is not None:
        element.text = str(text)
    return element


def _cac(parent, name):
    return SubElement(parent, f"{{{CAC}}}{name}")


class _Amounts:
    def __init__(self, currency: str):
        self.currency = currency
        self.exponent = currency_exponent(currency)

    def major(self, minor) -> str:
        value = Decimal(minor).scaleb(-self.exponent)
        return f"{value:.{self.exponent}f}"

    def price(self, minor: Decimal) -> str:
        return format(Decimal(minor).scaleb(-self.exponent).normalize(), "f")

    def element(self, parent, name, minor):
        return _cbc(parent, name, self.major(minor), currencyID=self.currency)


def _tax_category(parent, rate: Decimal, reverse_charge: bool, name: str = "TaxCategory"):
    category = _cac(parent, name)
    code = "AE" if reverse_charge else ("S" if rate > 0 else "Z")
    _cbc(category, "ID", code)
    _cbc(category, "Percent", format(rate.normalize(), "f"))
    if reverse_charge:
        _cbc(category, "TaxExemptionReasonCode", "VATEX-EU-AE")
        _cbc(category, "TaxExemptionReason", "Reverse charge")
    scheme = _cac(category, "TaxScheme")
    _cbc(scheme, "ID", "VAT")
    return category


def _party(parent, name: str, address: dict, *, seller: bool):
    party = _cac(_cac(parent, name), "Party")
    if address.get("email"):
        _cbc(party, "EndpointID", address["email"], schemeID="EM")
    postal = _cac(party, "PostalAddress")
    for field, tag in (
        ("street_line_one", "StreetName"),
        ("street_line_two", "AdditionalStreetName"),
        ("city", "CityName"),
        ("postcode", "PostalZone"),
        ("region", "CountrySubentity"),
    ):
        if address.get(field):
            _cbc(postal, tag, address[field])
    country = _cac(postal, "Country")
    _cbc(country, "IdentificationCode", address.get("country") or "")
    if address.get("tax_number"):
        tax = _cac(party, "PartyTaxScheme")
        _cbc(tax, "CompanyID", address["tax_number"])
        _cbc(_cac(tax, "TaxScheme"), "ID", "VAT")
    legal = _cac(party, "PartyLegalEntity")
    _cbc(legal, "RegistrationName", address.get("company_name") or address.get("name") or "")
    if not seller and address.get("email"):
        contact = _cac(party, "Contact")
        _cbc(contact, "ElectronicMail", address["email"])


def invoice_xml(invoice: Invoice) -> bytes:
    amounts = _Amounts(invoice.currency)
    lines = sorted(invoice.lines.all(), key=lambda line: (line.position, line.id))
    items = [line for line in lines if line.kind != InvoiceLine.Kind.DISCOUNT]
    discounts = [line for line in lines if line.kind == InvoiceLine.Kind.DISCOUNT]

    root = Element(f"{{{UBL}}}Invoice")
    _cbc(root, "CustomizationID", CUSTOMIZATION)
    _cbc(root, "ProfileID", PROFILE)
    _cbc(root, "ID", invoice.number or str(invoice.pk))
    _cbc(root, "IssueDate", (invoice.finalised_at or invoice.created_at).date().isoformat())
    if invoice.due_date:
        _cbc(root, "DueDate", invoice.due_date.isoformat())
    _cbc(root, "InvoiceTypeCode", INVOICE_TYPE_COMMERCIAL)
    if invoice.reverse_charge:
        _cbc(root, "Note", "Reverse charge: VAT to be accounted for by the recipient.")
    _cbc(root, "DocumentCurrencyCode", invoice.currency)
    _cbc(root, "BuyerReference", invoice.payee_address.get("email") or str(invoice.customer_id))
    if invoice.period_start and invoice.period_end:
        period = _cac(root, "InvoicePeriod")
        _cbc(period, "StartDate", invoice.period_start.date().isoformat())
        _cbc(period, "EndDate", invoice.period_end.date().isoformat())
    _party(root, "AccountingSupplierParty", invoice.biller_address, seller=True)
    _party(root, "AccountingCustomerParty", invoice.payee_address, seller=False)
    means = _cac(root, "PaymentMeans")
    _cbc(means, "PaymentMeansCode", "54" if invoice.payments.exists() else "58")

    for discount in discounts:
        allowance = _cac(root, "AllowanceCharge")
        _cbc(allowance, "ChargeIndicator", "false")
        _cbc(allowance, "AllowanceChargeReason", discount.description)
        amounts.element(allowance, "Amount", -discount.sub_total)
        _tax_category(allowance, discount.tax_rate, invoice.reverse_charge)

    groups: dict = defaultdict(lambda: [0, 0])
    for line in lines:
        groups[line.tax_rate][0] += line.sub_total
        groups[line.tax_rate][1] += line.tax_total
    tax_total = _cac(root, "TaxTotal")
    amounts.element(tax_total, "TaxAmount", invoice.tax_total)
    for rate, (taxable, tax) in sorted(groups.items()):
        subtotal = _cac(tax_total, "TaxSubtotal")
        amounts.element(subtotal, "TaxableAmount", taxable)
        amounts.element(subtotal, "TaxAmount", tax)
        _tax_category(subtotal, rate, invoice.reverse_charge)

    monetary = _cac(root, "LegalMonetaryTotal")
    line_total = sum(line.sub_total for line in items)
    amounts.element(monetary, "LineExtensionAmount", line_total)
    amounts.element(monetary, "TaxExclusiveAmount", invoice.sub_total)
    amounts.element(monetary, "TaxInclusiveAmount", invoice.total)
    if discounts:
        amounts.element(monetary, "AllowanceTotalAmount", line_total - invoice.sub_total)
    amounts.element(monetary, "PaidAmount", invoice.total - invoice.amount_due)
    amounts.element(monetary, "PayableAmount", invoice.amount_due)

    for index, line in enumerate(items, start=1):
        element = _cac(root, "InvoiceLine")
        _cbc(element, "ID", index)
        _cbc(
            element, "InvoicedQuantity", format(line.quantity.normalize(), "f"), unitCode=UNIT_PIECE
        )
        amounts.element(element, "LineExtensionAmount", line.sub_total)
        item = _cac(element, "Item")
        _cbc(item, "Name", line.description)
        _tax_category(item, line.tax_rate, invoice.reverse_charge, "ClassifiedTaxCategory")
        price = _cac(element, "Price")
        net_unit = Decimal(line.sub_total) / line.quantity if line.quantity else Decimal(0)
        _cbc(
            price,
            "PriceAmount",
            amounts.price(net_unit.quantize(Decimal("0.0001"))),
            currencyID=invoice.currency,
        )
    return tostring(root, encoding="utf-8", xml_declaration=True)
