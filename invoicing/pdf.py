"""Invoice and receipt PDFs (reportlab). Rendered on demand and cached by a hash of what they show,
so an unchanged invoice is never rendered twice and a changed one never shows stale content."""

import datetime as dt
import hashlib
import io
import json

from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from billing_project.billing_math import format_money
from invoicing.models import Invoice, Receipt
from tenants.api.fields import decimal_text

LAYOUT_VERSION = "1"
CACHE_TTL_SECONDS = 7 * 24 * 3600
PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 18 * mm
LINE_HEIGHT = 5 * mm
REVERSE_CHARGE_NOTE = (
    "Reverse charge: VAT to be accounted for by the recipient (Art. 196 VAT Directive)."
)
STATUS_TITLES = {"paid": "PAID", "void": "VOID", "uncollectible": "UNCOLLECTIBLE"}


def _date(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value.date()
    return value.isoformat()


def _address_lines(address: dict) -> list[str]:
    lines = [address.get("company_name") or "", address.get("name") or ""]
    lines += [address.get("street_line_one") or "", address.get("street_line_two") or ""]
    lines.append(" ".join(filter(None, [address.get("postcode"), address.get("city")])))
    lines += [address.get("region") or "", address.get("country") or ""]
    if address.get("tax_number"):
        lines.append(f"Tax number: {address['tax_number']}")
    seen, result = set(), []
    for line in lines:
        if line and line not in seen:
            seen.add(line)
            result.append(line)
    return result


def _decimal_text(value) -> str:
    return decimal_text(value) or ""


def invoice_content(invoice: Invoice) -> dict:
    """Everything the PDF shows; its hash is the render cache key."""
    return {
        "layout": LAYOUT_VERSION,
        "number": invoice.number,
        "status": invoice.status,
        "currency": invoice.currency,
        "finalised_at": _date(invoice.finalised_at or invoice.created_at),
        "due_date": _date(invoice.due_date),
        "paid_at": _date(invoice.paid_at),
        "period": [_date(invoice.period_start), _date(invoice.period_end)],
        "biller": invoice.biller_address,
        "payee": invoice.payee_address,
        "reverse_charge": invoice.reverse_charge,
        "totals": [invoice.sub_total, invoice.tax_total, invoice.total, invoice.amount_due],
        "lines": [
            [
                line.description,
                _decimal_text(line.quantity),
                _decimal_text(line.unit_price),
                _decimal_text(line.tax_rate),
                line.sub_total,
                line.tax_total,
                line.total,
            ]
            for line in sorted(invoice.lines.all(), key=lambda line: (line.position, line.id))
        ],
    }


def content_hash(content: dict) -> str:
    encoded = json.dumps(content, sort_keys=True, cls=DjangoJSONEncoder).encode()
    return hashlib.sha256(encoded).hexdigest()


def _cached(kind: str, content: dict, render) -> tuple[bytes, str]:
    digest = content_hash(content)
    key = f"pdf:{kind}:{digest}"
    data = cache.get(key)
    if data is None:
        data = render(content)
        cache.set(key, data, CACHE_TTL_SECONDS)
    return data, digest


def invoice_pdf(invoice: Invoice) -> bytes:
    content = invoice_content(invoice)
    data, digest = _cached("invoice", content, _render_invoice)
    if invoice.pdf_hash != digest:
        Invoice.objects.filter(pk=invoice.pk).update(pdf_hash=digest)
        invoice.pdf_hash = digest
    return data


class _Page:
    """A cursor down an A4 canvas that starts a new page when it runs out of room."""

    def __init__(self, canvas: Canvas):
        self.canvas = canvas
        self.y = PAGE_HEIGHT - MARGIN

    def need(self, height: float) -> None:
        if self.y - height < MARGIN:
            self.canvas.showPage()
            self.canvas.setFont("Helvetica", 9)
            self.y = PAGE_HEIGHT - MARGIN

    def text(self, x: float, value: str, *, size=9, bold=False, right=False) -> None:
        self.canvas.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        draw = self.canvas.drawRightString if right else self.canvas.drawString
        draw(x, self.y, value)

    def down(self, lines: float = 1) -> None:
        self.y -= LINE_HEIGHT * lines


def _header(page: _Page, title: str, biller: dict, payee: dict, facts: list[tuple[str, str]]):
    right = PAGE_WIDTH - MARGIN
    page.text(MARGIN, biller.get("name") or "", size=14, bold=True)
    page.text(right, title, size=18, bold=True, right=True)
    page.down(1.5)
    top = page.y
    for line in _address_lines({**biller, "name": ""}):
        page.text(MARGIN, line, size=8)
        page.down(0.8)
    biller_bottom = page.y
    page.y = top
    for label, value in facts:
        page.text(right - 45 * mm, label, size=9)
        page.text(right, value, size=9, right=True)
        page.down()
    page.y = min(page.y, biller_bottom) - LINE_HEIGHT
    page.text(MARGIN, "Bill to", size=9, bold=True)
    page.down()
    for line in _address_lines(payee):
        page.text(MARGIN, line)
        page.down()
    page.down()


def _render_invoice(content: dict) -> bytes:
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=1)
    canvas.setTitle(f"Invoice {content['number']}")
    page = _Page(canvas)
    currency, locale = content["currency"], (content["payee"] or {}).get("locale") or "en"

    def money(minor: int) -> str:
        return format_money(minor, currency, locale)

    facts = [("Invoice number", content["number"] or ""), ("Invoice date", content["finalised_at"])]
    if content["due_date"]:
        facts.append(("Due date", content["due_date"]))
    if content["period"][0]:
        facts.append(("Period", f"{content['period'][0]} to {content['period'][1]}"))
    if content["status"] in STATUS_TITLES:
        facts.append(("Status", STATUS_TITLES[content["status"]]))
    _header(page, "INVOICE", content["biller"], content["payee"], facts)

    right = PAGE_WIDTH - MARGIN
    columns = [
        (MARGIN, "Description", False),
        (right - 95 * mm, "Qty", True),
        (right - 70 * mm, "Unit price", True),
        (right - 50 * mm, "Tax", True),
        (right - 25 * mm, "Net", True),
        (right, "Total", True),
    ]
    for x, title, align_right in columns:
        page.text(x, title, bold=True, right=align_right)
    page.down(0.4)
    canvas.line(MARGIN, page.y, right, page.y)
    page.down()
    for description, quantity, unit_price, rate, net, _tax, total in content["lines"]:
        page.need(LINE_HEIGHT)
        page.text(MARGIN, description[:60])
        page.text(columns[1][0], quantity, right=True)
        unit = f"{unit_price}" if unit_price else ""
        page.text(columns[2][0], unit, right=True)
        page.text(columns[3][0], f"{rate}%", right=True)
        page.text(columns[4][0], money(net), right=True)
        page.text(columns[5][0], money(total), right=True)
        page.down()
    page.need(LINE_HEIGHT * 6)
    canvas.line(right - 70 * mm, page.y + LINE_HEIGHT * 0.6, right, page.y + LINE_HEIGHT * 0.6)
    sub_total, tax_total, total, amount_due = content["totals"]
    for label, value, bold in (
        ("Subtotal", sub_total, False),
        ("Tax", tax_total, False),
        ("Total", total, True),
        ("Amount due", amount_due, True),
    ):
        page.text(right - 70 * mm, label, bold=bold)
        page.text(right, money(value), bold=bold, right=True)
        page.down()
    if content["reverse_charge"]:
        page.down()
        page.text(MARGIN, REVERSE_CHARGE_NOTE, size=8)
        page.down()
    page.down()
    page.text(MARGIN, "Unit prices are in minor currency units.", size=7)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def receipt_content(receipt: Receipt) -> dict:
    payment = receipt.payment
    invoice = payment.invoice
    method = payment.payment_method
    return {
        "layout": LAYOUT_VERSION,
        "receipt": str(receipt.pk),
        "date": _date(payment.paid_at or receipt.created_at),
        "amount": payment.amount,
        "refunded": payment.refunded_amount,
        "currency": payment.currency,
        "invoice_number": invoice.number if invoice else "",
        "biller": invoice.biller_address if invoice else {"name": payment.tenant.name},
        "payee": invoice.payee_address if invoice else {"email": payment.customer.email},
        "method": f"{method.brand} •••• {method.last_four}" if method else "",
        "reference": payment.external_reference,
    }


def receipt_pdf(receipt: Receipt) -> bytes:
    data, _ = _cached("receipt", receipt_content(receipt), _render_receipt)
    return data


def _render_receipt(content: dict) -> bytes:
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=1)
    canvas.setTitle(f"Receipt {content['receipt']}")
    page = _Page(canvas)
    locale = (content["payee"] or {}).get("locale") or "en"
    facts = [("Receipt", content["receipt"][-12:]), ("Date paid", content["date"])]
    if content["invoice_number"]:
        facts.append(("Invoice number", content["invoice_number"]))
    _header(page, "RECEIPT", content["biller"], content["payee"], facts)
    right = PAGE_WIDTH - MARGIN
    rows = [("Amount paid", format_money(content["amount"], content["currency"], locale))]
    if content["refunded"]:
        rows.append(("Refunded", format_money(content["refunded"], content["currency"], locale)))
    if content["method"]:
        rows.append(("Payment method", content["method"]))
    if content["reference"]:
        rows.append(("Payment reference", content["reference"]))
    for label, value in rows:
        page.text(MARGIN, label, bold=True)
        page.text(right, value, right=True)
        page.down()
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()
