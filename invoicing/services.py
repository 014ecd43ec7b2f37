"""Writes for invoicing: issuing and finalising invoices (tax, vouchers, gapless numbers), charging
them through the gateway, refunds, receipts and payment methods. Each function owns its
transaction and its locks; gateway calls always run outside a database transaction."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from billing_project import billing_math
from billing_project.bulk import fast_insert, rows_update
from invoicing.gateways import CardError, ChargeRequest, GatewayResult, get_gateway
from invoicing.models import (
    PERIOD_BILLING_REASONS,
    FailureReason,
    Invoice,
    InvoiceLine,
    InvoiceNumberSequence,
    Payment,
    PaymentMethod,
    PaymentMethodCollection,
    Receipt,
    Refund,
    same_period_reasons,
)
from tenants.api.errors import Conflict
from tenants.models import TaxRule, Tenant
from webhooks.services import emit, emit_many

logger = logging.getLogger(__name__)

Status = Invoice.Status

# The only status changes an invoice may make; anything else is a 409.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    Status.DRAFT: frozenset({Status.OPEN, Status.PAID, Status.VOID}),
    Status.OPEN: frozenset({Status.PAID, Status.VOID, Status.UNCOLLECTIBLE}),
    Status.UNCOLLECTIBLE: frozenset({Status.PAID, Status.VOID}),
    Status.PAID: frozenset(),
    Status.VOID: frozenset(),
}
CHARGEABLE_STATUSES = frozenset({Status.OPEN, Status.UNCOLLECTIBLE})
# Reasons whose invoice takes the subscription's pending prorations and its vouchers.
PENDING_LINE_REASONS = frozenset({"renewal", "trial_conversion"})
COLLECTION_TOKEN_TTL = dt.timedelta(hours=1)
NUMBER_DIGITS = 6


@dataclass
class LineDraft:
    """A line to invoice, before tax. `amount` is the line's rounded total in minor units (tax
    included when `including_tax`)."""

    description: str
    kind: str
    amount: int
    quantity: Decimal = Decimal(1)
    unit_price: Decimal | None = None
    tax_type: str = "standard"
    including_tax: bool = False
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    metric_id: object = None
    subscription_item_id: object = None


@dataclass
class ChargeResult:
    paid: bool
    failure_reason: str | None
    payment: Payment | None = None


class DuplicatePeriodInvoice(Conflict):
    """The subscription already has its invoice for this period (the database's guarantee)."""

    default_detail = "This subscription period has already been invoiced."

    def __init__(self, invoice: Invoice):
        super().__init__()
        self.invoice = invoice


def transition_check(invoice: Invoice, target: str) -> None:
    if target not in ALLOWED_TRANSITIONS[invoice.status]:
        raise Conflict(f"An invoice that is {invoice.status} cannot become {target}.")


# --- Event payloads ------------------------------------------------------------------------------


def invoice_event_data(invoice: Invoice) -> dict:
    return {
        "id": invoice.id,
        "number": invoice.number,
        "status": invoice.status,
        "customer": invoice.customer_id,
        "subscription": invoice.subscription_id,
        "billing_reason": invoice.billing_reason,
        "currency": invoice.currency,
        "total": invoice.total,
        "amount_due": invoice.amount_due,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "due_date": invoice.due_date,
    }


def payment_event_data(payment: Payment) -> dict:
    return {
        "id": payment.id,
        "invoice": payment.invoice_id,
        "customer": payment.customer_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "status": payment.status,
        "failure_reason": payment.failure_reason,
        "refunded_amount": payment.refunded_amount,
    }


# --- Assembling invoices (no writes) -----------------------------------------------------------


def _address_of_tenant(tenant) -> dict:
    return {
        "name": tenant.legal_name or tenant.name,
        "tax_number": tenant.tax_number,
        "street_line_one": tenant.street_line_one,
        "street_line_two": tenant.street_line_two,
        "city": tenant.city,
        "region": tenant.region,
        "postcode": tenant.postcode,
        "country": tenant.country,
    }


def _address_of_customer(customer) -> dict:
    return {
        "name": customer.name,
        "company_name": customer.company_name,
        "email": customer.email,
        "tax_number": customer.tax_number,
        "street_line_one": customer.street_line_one,
        "street_line_two": customer.street_line_two,
        "city": customer.city,
        "region": customer.region,
        "postcode": customer.postcode,
        "country": customer.country,
        "locale": customer.locale,
    }


@dataclass
class AssembledInvoice:
    invoice: Invoice
    new_lines: list[InvoiceLine]
    pending_lines: list[InvoiceLine] = field(default_factory=list)


class InvoiceAssembler:
    """Builds invoices and their taxed lines in memory for one tenant, loading the tenant's tax
    rules once, so that one invoice and a batch of thousands go through the same code."""

    def __init__(self, tenant, at: dt.datetime):
        self.tenant = tenant
        self.at = at
        self._rules: dict | None = None
        self._biller = _address_of_tenant(tenant)
        self._decisions: dict = {}

    def _tax_rules(self) -> dict:
        if self._rules is None:
            self._rules = {
                (country, tax_type): rate
                for country, tax_type, rate in TaxRule.objects.for_tenant(self.tenant).values_list(
                    "country", "tax_type", "rate"
                )
            }
        return self._rules

    def tax_decision(self, customer, tax_type: str) -> billing_math.TaxDecision:
        key = (customer.pk, tax_type)
        if key not in self._decisions:
            self._decisions[key] = billing_math.resolve_tax_rate(
                customer_rates={
                    "standard": customer.standard_tax_rate,
                    "digital": customer.digital_tax_rate,
                },
                tenant_country_rules=self._tax_rules(),
                tenant_default=self.tenant.default_tax_rate,
                customer_country=customer.country or None,
                tenant_country=self.tenant.country or None,
                tax_type=tax_type,
                customer_is_business=customer.type == "business",
                customer_tax_number=customer.tax_number or None,
            )
        return self._decisions[key]

    def _tax_line(self, line: InvoiceLine, customer, currency: str, gross_or_net: int) -> bool:
        decision = self.tax_decision(customer, line.tax_type)
        net, tax, total = billing_math.tax_for_line(
            gross_or_net, decision.rate, line.including_tax, currency
        )
        line.sub_total, line.tax_total, line.total, line.tax_rate = net, tax, total, decision.rate
        return decision.reverse_charge

    def assemble(
        self,
        *,
        customer,
        currency: str,
        drafts: list[LineDraft],
        pending_lines: list[InvoiceLine] = (),
        vouchers: list[tuple] = (),
        subscription=None,
        period_start=None,
        period_end=None,
        billing_reason: str,
    ) -> AssembledInvoice:
        invoice = Invoice(
            tenant_id=self.tenant.pk,
            customer=customer,
            subscription=subscription,
            status=Status.OPEN,
            billing_reason=billing_reason,
            currency=currency,
            period_start=period_start,
            period_end=period_end,
            created_at=self.at,
            finalised_at=self.at,
            biller_address=self._biller,
            payee_address=_address_of_customer(customer),
        )
        new_lines = [
            InvoiceLine(
                tenant_id=self.tenant.pk,
                invoice=invoice,
                description=draft.description,
                kind=draft.kind,
                quantity=draft.quantity,
                unit_price=draft.unit_price,
                tax_type=draft.tax_type,
                including_tax=draft.including_tax,
                sub_total=draft.amount,
                period_start=draft.period_start,
                period_end=draft.period_end,
                metric_id=draft.metric_id,
                subscription_item_id=draft.subscription_item_id,
                created_at=self.at,
            )
            for draft in drafts
        ]
        pending_lines = list(pending_lines)
        for line in pending_lines:
            line.invoice = invoice
        reverse_charge = False
        for position, line in enumerate([*new_lines, *pending_lines]):
            line.position = position
            reverse_charge |= self._tax_line(line, customer, currency, line.sub_total)
        # Vouchers discount the net of everything above, one line per redemption.
        net = sum(line.sub_total for line in [*new_lines, *pending_lines])
        position = len(new_lines) + len(pending_lines)
        for description, percentage, fixed_credit in vouchers:
            discount = billing_math.discount_amount(
                net, percentage=percentage, fixed_credit_minor=fixed_credit, currency=currency
            )
            if not discount:
                continue
            line = InvoiceLine(
                tenant_id=self.tenant.pk,
                invoice=invoice,
                position=position,
                description=description,
                kind=InvoiceLine.Kind.DISCOUNT,
                unit_price=Decimal(-discount),
                created_at=self.at,
            )
            reverse_charge |= self._tax_line(line, customer, currency, -discount)
            new_lines.append(line)
            net -= discount
            position += 1
        invoice.reverse_charge = reverse_charge
        invoice.sub_total, invoice.tax_total, invoice.total = billing_math.invoice_totals(
            [*new_lines, *pending_lines]
        )
        invoice.amount_due = max(invoice.total, 0)
        if invoice.amount_due == 0:
            invoice.status, invoice.paid, invoice.paid_at = Status.PAID, True, self.at
        if customer.billing_type == "invoice":
            invoice.due_date = (self.at + dt.timedelta(days=self.tenant.payment_terms_days)).date()
        return AssembledInvoice(invoice, new_lines, pending_lines)


def invoice_numbers_take(*, tenant, count: int) -> list[str]:
    """Take the next `count` numbers of the tenant's gapless sequence. Call inside the transaction
    that saves the invoices, as late in it as possible: the row lock taken here is held until it
    commits (serialising every other numbering of the tenant), and a rollback returns them."""
    if count <= 0:
        return []
    # One statement increments and reads under the row lock (UPDATE ... RETURNING).
    table = InvoiceNumberSequence._meta.db_table
    sql = f'UPDATE "{table}" SET "last_number" = "last_number" + %s WHERE "tenant_id" = %s '
    sql += 'RETURNING "last_number"'
    tenant_id = InvoiceNumberSequence._meta.get_field("tenant").get_db_prep_value(
        tenant.pk, connection
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [count, tenant_id])
        row = cursor.fetchone()
        if row is None:
            InvoiceNumberSequence.objects.bulk_create(
                [InvoiceNumberSequence(tenant=tenant)], ignore_conflicts=True
            )
            cursor.execute(sql, [count, tenant_id])
            row = cursor.fetchone()
    first = row[0] - count + 1
    prefix = tenant.invoice_number_prefix
    return [f"{prefix}{n:0{NUMBER_DIGITS}d}" for n in range(first, first + count)]


def invoice_lines_persist(*, assembled: list[AssembledInvoice]) -> None:
    """Save the lines of assembled invoices (inside the caller's transaction, which saves their
    invoices too: the line's foreign key is checked at commit). Needs no invoice number, so the
    batch path does this before it takes the numbers."""
    fast_insert(InvoiceLine, [line for item in assembled for line in item.new_lines])
    pending = [line for item in assembled for line in item.pending_lines]
    rows_update(
        InvoiceLine, pending, ["invoice", "position", "sub_total", "tax_rate", "tax_total", "total"]
    )


def invoices_number_and_save(*, tenant, assembled: list[AssembledInvoice]) -> list[Invoice]:
    """Number, save and announce assembled invoices whose lines are saved (inside the caller's
    transaction; the numbering lock is held from here until it commits)."""
    if not assembled:
        return []
    numbers = invoice_numbers_take(tenant=tenant, count=len(assembled))
    invoices = []
    for item, number in zip(assembled, numbers, strict=True):
        item.invoice.number = number
        invoices.append(item.invoice)
    fast_insert(Invoice, invoices)
    events = []
    for invoice in invoices:
        data = invoice_event_data(invoice)
        events += [("invoice.created", data), ("invoice.finalised", data)]
        if invoice.status == Status.PAID:
            events.append(("invoice.paid", data))
    emit_many(tenant=tenant, events=events)
    return invoices


def invoices_persist(*, tenant, assembled: list[AssembledInvoice]) -> list[Invoice]:
    """Number, save and announce assembled invoices in bulk (inside the caller's transaction)."""
    if not assembled:
        return []
    invoice_lines_persist(assembled=assembled)
    return invoices_number_and_save(tenant=tenant, assembled=assembled)


def _voucher_lines(customer, currency: str) -> list[tuple]:
    """The customer's redeemable vouchers, consumed for this invoice (subscriptions owns them)."""
    from subscriptions import services as subscription_services

    consumed = subscription_services.voucher_redemptions_consume(
        customer=customer, currency=currency
    )
    return [
        (f"Voucher {redemption.voucher.code}", percentage, fixed_credit)
        for redemption, percentage, fixed_credit in consumed
    ]


def pending_lines_for_update(subscription_ids) -> dict:
    lines: dict = {}
    for line in (
        InvoiceLine.objects.select_for_update()
        .filter(subscription_id__in=list(subscription_ids), invoice__isnull=True)
        .order_by("created_at", "id")
    ):
        lines.setdefault(line.subscription_id, []).append(line)
    return lines


def invoice_issue(
    *,
    customer,
    currency: str,
    lines: list[LineDraft],
    subscription=None,
    period_start=None,
    period_end=None,
    billing_reason: str,
    at: dt.datetime | None = None,
) -> Invoice:
    """Issue one finalised invoice: taxed lines, the subscription's pending prorations and the
    customer's vouchers (for period invoices), a gapless number; open, or paid when nothing is
    due. Raises DuplicatePeriodInvoice when the subscription's period is already invoiced."""
    if billing_reason not in Invoice.BillingReason.values:
        raise ValueError(f"Unknown billing reason: {billing_reason}")
    at = at or timezone.now()
    tenant = customer.tenant
    takes_pending = subscription is not None and billing_reason in PENDING_LINE_REASONS
    with transaction.atomic():
        # One invoice per subscription period and uniqueness rule (Invoice's constraints).
        same_period = same_period_reasons(billing_reason)
        if subscription is not None and same_period:
            existing = Invoice.objects.filter(
                tenant=tenant,
                subscription=subscription,
                period_start=period_start,
                billing_reason__in=same_period,
            ).first()
            if existing is not None:
                raise DuplicatePeriodInvoice(existing)
        pending = (
            pending_lines_for_update([subscription.pk]).get(subscription.pk, [])
            if takes_pending
            else []
        )
        vouchers = (
            _voucher_lines(customer, currency) if billing_reason in PERIOD_BILLING_REASONS else []
        )
        assembled = InvoiceAssembler(tenant, at).assemble(
            customer=customer,
            currency=currency,
            drafts=lines,
            pending_lines=pending,
            vouchers=vouchers,
            subscription=subscription,
            period_start=period_start,
            period_end=period_end,
            billing_reason=billing_reason,
        )
        (invoice,) = invoices_persist(tenant=tenant, assembled=[assembled])
    return invoice


def pending_line_add(*, subscription, line: LineDraft) -> InvoiceLine:
    """Keep a line (a proration) for the subscription's next renewal invoice."""
    return InvoiceLine.objects.create(
        tenant_id=subscription.tenant_id,
        subscription=subscription,
        description=line.description,
        kind=line.kind,
        quantity=line.quantity,
        unit_price=line.unit_price,
        tax_type=line.tax_type,
        including_tax=line.including_tax,
        sub_total=line.amount,
        total=line.amount,
        period_start=line.period_start,
        period_end=line.period_end,
        metric_id=line.metric_id,
        subscription_item_id=line.subscription_item_id,
    )


# --- Status changes --------------------------------------------------------------------------


def _locked(invoice: Invoice) -> Invoice:
    return Invoice.objects.select_for_update().get(pk=invoice.pk)


def invoice_void(*, invoice: Invoice, reason: str = "") -> Invoice:
    with transaction.atomic():
        invoice = _locked(invoice)
        transition_check(invoice, Status.VOID)
        invoice.status, invoice.voided_at = Status.VOID, timezone.now()
        invoice.amount_due, invoice.next_attempt_at = 0, None
        invoice.save(update_fields=["status", "voided_at", "amount_due", "next_attempt_at"])
    if reason:
        logger.info("Invoice %s voided: %s", invoice.pk, reason)
    return invoice


def invoice_mark_paid(*, invoice: Invoice, at: dt.datetime | None = None) -> Invoice:
    """Paid outside the platform (a bank transfer): no payment is recorded."""
    with transaction.atomic():
        invoice = _locked(invoice)
        transition_check(invoice, Status.PAID)
        _invoice_set_paid(invoice, at or timezone.now())
        emit(tenant=invoice.tenant, event_type="invoice.paid", data=invoice_event_data(invoice))
    return invoice


def invoice_mark_uncollectible(*, invoice: Invoice) -> Invoice:
    with transaction.atomic():
        invoice = _locked(invoice)
        transition_check(invoice, Status.UNCOLLECTIBLE)
        invoice.status, invoice.next_attempt_at = Status.UNCOLLECTIBLE, None
        invoice.save(update_fields=["status", "next_attempt_at"])
    return invoice


def _invoice_set_paid(invoice: Invoice, at: dt.datetime) -> None:
    invoice.status, invoice.paid, invoice.paid_at = Status.PAID, True, at
    invoice.amount_due, invoice.next_attempt_at = 0, None
    invoice.save(update_fields=["status", "paid", "paid_at", "amount_due", "next_attempt_at"])


# --- Charging --------------------------------------------------------------------------------


def payment_method_for_charge(*, customer, subscription=None) -> PaymentMethod | None:
    """The subscription's card if it has a usable one, else the customer's default, else their
    newest card."""
    methods = PaymentMethod.objects.filter(
        tenant_id=customer.tenant_id, customer=customer, deleted_at__isnull=True
    )
    chosen_id = getattr(subscription, "payment_method_id", None)
    if chosen_id is not None:
        chosen = methods.filter(pk=chosen_id).first()
        if chosen is not None:
            return chosen
    return methods.order_by("-default", "-id").first()


def _idempotency_key(invoice: Invoice) -> str:
    # The first attempt is keyed by the invoice id alone; retries after a failure are new attempts.
    return (
        str(invoice.pk) if invoice.attempt_count == 0 else f"{invoice.pk}:{invoice.attempt_count}"
    )


def payment_build(*, invoice: Invoice, payment_method: PaymentMethod, **fields) -> Payment:
    """The next attempt at the invoice's amount due, unsaved, keyed by its attempt count (the
    billing engine inserts a batch of them at once; payment_claim saves one). `fields` override
    (a fallback attempt has its own amount read under lock and its own key)."""
    values = {
        "amount": invoice.amount_due,
        "currency": invoice.currency,
        "idempotency_key": _idempotency_key(invoice),
        **fields,
    }
    return Payment(
        tenant_id=invoice.tenant_id,
        invoice=invoice,
        customer_id=invoice.customer_id,
        payment_method=payment_method,
        **values,
    )


def payment_claim(*, invoice: Invoice, payment_method: PaymentMethod) -> Payment:
    """Record the attempt (a pending payment with its idempotency key) before calling the gateway,
    so that a crash between the call and its recording is retried with the same key. Call inside
    a transaction holding the invoice's row lock."""
    pending = invoice.payments.filter(status=Payment.Status.PENDING).first()
    if pending is not None:
        return pending
    payment = payment_build(invoice=invoice, payment_method=payment_method)
    payment.save(force_insert=True)
    invoice.attempt_count += 1
    invoice.save(update_fields=["attempt_count"])
    return payment


def payments_settle(
    *, payments: list[Payment], results: list[GatewayResult], at: dt.datetime
) -> None:
    """Record gateway results in bulk: completed payments pay their invoices (with a receipt),
    failed ones stay failed with their reason. Payments already settled are left alone."""
    if not payments:
        return
    by_id = {p.pk: (p, r) for p, r in zip(payments, results, strict=True)}
    events_by_tenant: dict = {}
    with transaction.atomic():
        still_pending = set(
            Payment.objects.select_for_update()
            .filter(pk__in=list(by_id), status=Payment.Status.PENDING)
            .values_list("pk", flat=True)
        )
        # Lock the invoices and read only their status; the payments carry the rest.
        statuses = dict(
            Invoice.objects.select_for_update()
            .filter(pk__in=[by_id[pk][0].invoice_id for pk in still_pending])
            .values_list("pk", "status")
        )
        invoices = {}
        for pk in still_pending:
            invoice = by_id[pk][0].invoice
            invoice.status = statuses[invoice.pk]
            invoices[invoice.pk] = invoice
        changed_payments, paid_invoices, receipts = [], [], []
        for pk in still_pending:
            payment, result = by_id[pk]
            payment.external_reference = result.external_reference
            invoice = invoices[payment.invoice_id]
            events = events_by_tenant.setdefault(payment.tenant_id, [])
            if result.succeeded:
                payment.status, payment.paid_at = Payment.Status.COMPLETED, at
                receipts.append(
                    Receipt(tenant_id=payment.tenant_id, payment=payment, created_at=at)
                )
                if invoice.status in CHARGEABLE_STATUSES:
                    invoice.status, invoice.paid, invoice.paid_at = Status.PAID, True, at
                    invoice.amount_due, invoice.next_attempt_at = 0, None
                    paid_invoices.append(invoice.pk)
                    events.append(("invoice.paid", invoice_event_data(invoice)))
                events.append(("payment.succeeded", payment_event_data(payment)))
            else:
                payment.status = Payment.Status.FAILED
                payment.failure_reason = result.failure_reason
                events.append(
                    (
                        "invoice.payment_failed",
                        {**invoice_event_data(invoice), "failure_reason": result.failure_reason},
                    )
                )
            changed_payments.append(payment)
        rows_update(
            Payment, changed_payments, ["status", "paid_at", "failure_reason", "external_reference"]
        )
        # Every paid invoice gets the same values: one plain UPDATE.
        Invoice.objects.filter(pk__in=paid_invoices).update(
            status=Status.PAID, paid=True, paid_at=at, amount_due=0, next_attempt_at=None
        )
        fast_insert(Receipt, receipts)
        tenants = Tenant.objects.in_bulk(list(events_by_tenant))
        for tenant_id, events in events_by_tenant.items():
            emit_many(tenant=tenants[tenant_id], events=events)
    for pk, (payment, _) in by_id.items():
        if pk not in still_pending:
            # Settled by a concurrent run: show what it recorded.
            payment.refresh_from_db(fields=["status", "failure_reason", "external_reference"])


def invoice_charge(
    *,
    invoice: Invoice,
    payment_method: PaymentMethod | None = None,
    card_token: str | None = None,
    at: dt.datetime | None = None,
) -> ChargeResult:
    """Charge what is due on the invoice. Runs outside any transaction (the gateway call is a
    network call); a retry never charges twice."""
    at = at or timezone.now()
    customer = invoice.customer
    if card_token:
        try:
            payment_method = payment_method_from_card_token(
                customer=customer,
                card_token=card_token,
                make_default=payment_method_for_charge(customer=customer) is None,
            )
        except CardError as error:
            return ChargeResult(False, error.failure_reason, None)
    with transaction.atomic():
        locked = _locked(invoice)
        if locked.status == Status.PAID:
            payment = locked.payments.filter(status=Payment.Status.COMPLETED).last()
            return ChargeResult(True, None, payment)
        if locked.status not in CHARGEABLE_STATUSES:
            raise Conflict(f"An invoice that is {locked.status} cannot be charged.")
        if locked.amount_due <= 0:
            _invoice_set_paid(locked, at)
            emit(tenant=customer.tenant, event_type="invoice.paid", data=invoice_event_data(locked))
            return ChargeResult(True, None, None)
        payment_method = payment_method or payment_method_for_charge(
            customer=customer, subscription=locked.subscription
        )
        if payment_method is None:
            return ChargeResult(False, FailureReason.INVALID_DETAILS.value, None)
        payment = payment_claim(invoice=locked, payment_method=payment_method)
    method = payment.payment_method or payment_method
    result = get_gateway().charge(
        tenant=invoice.tenant_id,
        amount=payment.amount,
        currency=payment.currency,
        gateway_reference=method.gateway_reference,
        idempotency_key=payment.idempotency_key,
    )
    payments_settle(payments=[payment], results=[result], at=at)
    _subscription_payment_recovered(invoice, payment)
    invoice.refresh_from_db()
    return ChargeResult(payment.status == Payment.Status.COMPLETED, payment.failure_reason, payment)


def payments_charge_many(*, payments: list[Payment], at: dt.datetime) -> None:
    """Charge claimed payments through the gateway in one call and settle them (the engine's
    batch path)."""
    if not payments:
        return
    # The engine's payments carry their card already; load the others in one query.
    methods = {
        p.payment_method_id: p.payment_method
        for p in payments
        if Payment.payment_method.is_cached(p) and p.payment_method is not None
    }
    missing = {p.payment_method_id for p in payments} - set(methods)
    if missing:
        methods.update((m.pk, m) for m in PaymentMethod.objects.filter(pk__in=missing))
    requests = [
        ChargeRequest(
            p.tenant_id,
            p.idempotency_key,
            p.amount,
            p.currency,
            methods[p.payment_method_id].gateway_reference,
        )
        for p in payments
    ]
    results = get_gateway().charge_many(requests)
    payments_settle(payments=payments, results=results, at=at)


def _subscription_payment_recovered(invoice: Invoice, payment: Payment) -> None:
    if invoice.subscription_id is None or payment.status != Payment.Status.COMPLETED:
        return
    from subscriptions import services as subscription_services

    subscription_services.subscription_payment_recovered(subscription=invoice.subscription)


# --- Falling back from the primary card to the secondary (seed 003) --------------------------


def primary_and_secondary_cards(
    methods, *, default_namespace_id
) -> tuple[PaymentMethod | None, PaymentMethod | None]:
    """The primary and the secondary card among a customer's cards in use (`methods`). Each
    namespace may have its own: the default namespace's win, then the oldest."""
    found: dict = {}
    for method in sorted(methods, key=lambda m: (m.namespace_id != default_namespace_id, m.pk)):
        if method.role in (PaymentMethod.Role.PRIMARY, PaymentMethod.Role.SECONDARY):
            found.setdefault(method.role, method)
    return found.get(PaymentMethod.Role.PRIMARY), found.get(PaymentMethod.Role.SECONDARY)


def payments_charge_fallback(
    *, declined: list[tuple[Payment, PaymentMethod]], at: dt.datetime | None = None
) -> list[Payment]:
    """Charge the invoice of each declined payment once more, with the card paired with it (the
    customer's secondary), and settle. The attempt is keyed off the declined one, so a retry
    never charges twice, and belongs to the same round: it leaves `attempt_count` alone, so
    dunning retries on the same days as for a customer with one card. Skipped: a card that is
    the declined one, invoices no longer open, and invoices with a charge in flight. Returns the
    fallback payments."""
    at = at or timezone.now()
    wanted = {
        payment.invoice_id: (payment, card)
        for payment, card in declined
        if payment.status == Payment.Status.FAILED
        and card is not None
        and card.pk != payment.payment_method_id
    }
    if not wanted:
        return []
    keys = {pk: f"{payment.idempotency_key}:fallback" for pk, (payment, _) in wanted.items()}
    with transaction.atomic():
        amounts = dict(
            Invoice.objects.select_for_update()
            .filter(pk__in=list(wanted), status=Status.OPEN, amount_due__gt=0)
            .values_list("pk", "amount_due")
        )
        in_flight = set(
            Payment.objects.filter(invoice_id__in=list(amounts))
            .filter(Q(status=Payment.Status.PENDING) | Q(idempotency_key__in=list(keys.values())))
            .values_list("invoice_id", flat=True)
        )
        claims = [
            payment_build(
                invoice=payment.invoice,
                payment_method=card,
                amount=amounts[pk],
                idempotency_key=keys[pk],
            )
            for pk, (payment, card) in wanted.items()
            if pk in amounts and pk not in in_flight
        ]
        fast_insert(Payment, claims)
    for claim in claims:
        logger.info(
            "invoice %s: primary card declined (%s), charging the secondary",
            claim.invoice_id,
            wanted[claim.invoice_id][0].failure_reason,
        )
    payments_charge_many(payments=claims, at=at)
    return claims


def invoice_charge_with_fallback(
    *, invoice: Invoice, at: dt.datetime | None = None
) -> ChargeResult:
    """Charge the invoice with the customer's primary card (without one: the usual card, see
    payment_method_for_charge) and, when that is declined, once with its secondary card. The
    second attempt is made only after the first is recorded failed, and a paid invoice is never
    charged, so the invoice is never paid twice."""
    primary, secondary = primary_and_secondary_cards(
        PaymentMethod.objects.filter(
            tenant_id=invoice.tenant_id,
            customer_id=invoice.customer_id,
            deleted_at__isnull=True,
            role__in=[PaymentMethod.Role.PRIMARY, PaymentMethod.Role.SECONDARY],
        ),
        default_namespace_id=invoice.customer.default_namespace_id,
    )
    result = invoice_charge(invoice=invoice, payment_method=primary, at=at)
    if result.paid or result.payment is None or secondary is None:
        return result
    fallback = payments_charge_fallback(declined=[(result.payment, secondary)], at=at)
    if not fallback:
        return result
    payment = fallback[0]
    _subscription_payment_recovered(invoice, payment)
    invoice.refresh_from_db()
    return ChargeResult(payment.status == Payment.Status.COMPLETED, payment.failure_reason, payment)


# --- Refunds ---------------------------------------------------------------------------------


def payment_refundable_amount(payment: Payment) -> int:
    if payment.status not in (Payment.Status.COMPLETED, Payment.Status.PARTIALLY_REFUNDED):
        return 0
    return payment.amount - payment.refunded_amount


def refund_create(
    *,
    payment: Payment,
    amount: int,
    reason: str = "",
    billing_admin: str = "",
    currency: str | None = None,
) -> Refund:
    """Refund part or all of a completed payment. The amount is reserved under the payment's row
    lock before the gateway is called, so concurrent refunds can never exceed what was paid."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValidationError({"amount": ["amount must be a positive integer"]})
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        if currency and currency != locked.currency:
            raise ValidationError({"currency": [f"currency must be {locked.currency}"]})
        refundable = payment_refundable_amount(locked)
        if amount > refundable:
            raise ValidationError(
                {"amount": [f"amount must not exceed what is left to refund ({refundable})"]}
            )
        locked.refunded_amount += amount
        locked.save(update_fields=["refunded_amount"])
        refund = Refund.objects.create(
            tenant_id=locked.tenant_id,
            payment=locked,
            customer_id=locked.customer_id,
            amount=amount,
            currency=locked.currency,
            reason=reason or "",
            billing_admin=billing_admin or "",
        )
    result = get_gateway().refund(
        tenant=locked.tenant_id,
        charge_reference=locked.external_reference,
        amount=amount,
        currency=locked.currency,
        idempotency_key=str(refund.pk),
    )
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        refund.external_reference = result.external_reference
        if result.succeeded:
            refund.status = Refund.Status.ISSUED
            locked.status = (
                Payment.Status.FULLY_REFUNDED
                if locked.refunded_amount >= locked.amount
                else Payment.Status.PARTIALLY_REFUNDED
            )
            locked.save(update_fields=["status"])
            emit(
                tenant=locked.tenant,
                event_type="payment.refunded",
                data={**payment_event_data(locked), "refund": refund.pk, "refund_amount": amount},
            )
        else:
            refund.status = Refund.Status.FAILED
            Payment.objects.filter(pk=locked.pk).update(
                refunded_amount=F("refunded_amount") - amount
            )
        refund.save(update_fields=["status", "external_reference"])
    payment.refresh_from_db()
    return refund


# --- Payment methods -------------------------------------------------------------------------


def _card_name(brand: str, last_four: str) -> str:
    return f"{brand.title()} ending in {last_four}"


def payment_method_from_card_token(
    *, customer, card_token: str, make_default: bool = True, role: str = "NORMAL", namespace=None
) -> PaymentMethod:
    """Exchange a card token for a stored payment method (raises CardError if the gateway
    refuses the token)."""
    card = get_gateway().tokenise(tenant=customer.tenant, card_token=card_token)
    with transaction.atomic():
        if make_default:
            PaymentMethod.objects.filter(
                tenant_id=customer.tenant_id, customer=customer, default=True
            ).update(default=False)
        return PaymentMethod.objects.create(
            tenant_id=customer.tenant_id,
            customer=customer,
            name=_card_name(card.brand, card.last_four),
            brand=card.brand,
            last_four=card.last_four,
            expiry_month=card.expiry_month,
            expiry_year=card.expiry_year,
            gateway_reference=card.gateway_reference,
            default=make_default,
            role=role,
            namespace=namespace,
        )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def payment_method_collection_start(*, customer) -> str:
    """A one-time token a front end uses to attach a card; only its hash is stored."""
    token = "pmc_" + secrets.token_urlsafe(24)
    PaymentMethodCollection.objects.create(
        tenant_id=customer.tenant_id,
        customer=customer,
        token_hash=_token_hash(token),
        expires_at=timezone.now() + COLLECTION_TOKEN_TTL,
    )
    return token


def payment_method_collection_complete(*, customer, token: str, card_token: str) -> PaymentMethod:
    with transaction.atomic():
        collection = (
            PaymentMethodCollection.objects.select_for_update()
            .filter(
                tenant_id=customer.tenant_id,
                customer=customer,
                token_hash=_token_hash(token or ""),
                used_at__isnull=True,
                expires_at__gt=timezone.now(),
            )
            .first()
        )
        if collection is None:
            raise ValidationError({"token": ["token is unknown, used or expired"]})
        try:
            method = payment_method_from_card_token(
                customer=customer,
                card_token=card_token,
                make_default=payment_method_for_charge(customer=customer) is None,
            )
        except CardError as error:
            raise ValidationError(
                {"card_token": [f"card_token was refused: {error.failure_reason}"]}
            ) from None
        collection.used_at = timezone.now()
        collection.save(update_fields=["used_at"])
    return method


def payment_method_set_default(*, payment_method: PaymentMethod) -> PaymentMethod:
    with transaction.atomic():
        PaymentMethod.objects.filter(
            tenant_id=payment_method.tenant_id, customer_id=payment_method.customer_id, default=True
        ).exclude(pk=payment_method.pk).update(default=False)
        payment_method.default = True
        payment_method.save(update_fields=["default"])
    return payment_method


def payment_method_delete(*, payment_method: PaymentMethod) -> None:
    """Soft delete (payments keep pointing at it); the newest remaining card becomes the default."""
    with transaction.atomic():
        was_default = payment_method.default
        payment_method.deleted_at, payment_method.default = timezone.now(), False
        payment_method.save(update_fields=["deleted_at", "default"])
        if was_default:
            successor = (
                PaymentMethod.objects.filter(
                    tenant_id=payment_method.tenant_id,
                    customer_id=payment_method.customer_id,
                    deleted_at__isnull=True,
                )
                .order_by("-id")
                .first()
            )
            if successor is not None:
                successor.default = True
                successor.save(update_fields=["default"])
