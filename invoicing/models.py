"""Invoices and their lines, the tenant's gapless invoice numbers, payments, refunds, receipts,
payment methods (gateway tokens and display data only) and the sandbox gateway's charge ledger."""

from django.db import models
from django.db.models import Q

from tenants.models import TenantOwnedModel


class FailureReason(models.TextChoices):
    """Why a charge or a card collection failed (seed 001)."""

    EXPIRED_CARD = "expired_card"
    INVALID_DETAILS = "invalid_details"
    FRAUD = "fraud"
    AUTHENTICATION_REQUIRED = "authentication_required"
    INVALID_CARD = "invalid_card"
    GENERAL_DECLINE = "general_decline"
    CONTACT_PROVIDER = "contact_provider"
    LACK_OF_FUNDS = "lack_of_funds"


class PaymentMethod(TenantOwnedModel):
    """A customer's card as the gateway knows it: a token and what may be shown (never a number)."""

    class Role(models.TextChoices):
        PRIMARY = "PRIMARY"
        SECONDARY = "SECONDARY"
        NORMAL = "NORMAL"

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="payment_methods"
    )
    name = models.CharField(max_length=255, blank=True, default="")
    brand = models.CharField(max_length=32, blank=True, default="")
    last_four = models.CharField(max_length=4, blank=True, default="")
    expiry_month = models.PositiveSmallIntegerField(null=True, blank=True)
    expiry_year = models.PositiveSmallIntegerField(null=True, blank=True)
    default = models.BooleanField(default=False)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.NORMAL)
    namespace = models.ForeignKey(
        "customers.Namespace",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="payment_methods",
    )
    # The billing contact given with the card by the namespace billing API (seed 003), as sent.
    contact = models.JSONField(default=dict, blank=True)
    # The gateway's token for the card. Never serialised.
    gateway_reference = models.CharField(max_length=255, editable=False)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "customer"], name="payment_method_customer_idx")]

    def __str__(self) -> str:
        return f"{self.brand} •••• {self.last_four}"


class PaymentMethodCollection(TenantOwnedModel):
    """A one-time token handed to a front end to collect a card (start/complete collection)."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"collection for {self.customer_id}"


class InvoiceNumberSequence(TenantOwnedModel):
    """The tenant's gapless invoice counter. Numbers are taken under a row lock in the
    transaction that finalises the invoices, so a rollback gives them back."""

    last_number = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="invoice_number_sequence_unique")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.last_number}"


# Reasons that bill one subscription period; the database allows one such invoice per period.
PERIOD_BILLING_REASONS = ("subscription_start", "renewal", "trial_conversion")
# The invoice of a closed period's `post_invoice` usage (its period_start is the closed period's
# start, which the period invoice above shares): the database allows one per subscription period
# too, by a constraint of its own so that the two never collide.
POST_INVOICE_REASON = "post_invoice"
# The final invoice of a subscription that ends instead of renewing: the unbilled usage of its last
# period up to the end (period_start: that period's start, period_end: the end moment). One per
# subscription period, by a constraint of its own (it shares period_start with that period's
# invoice and its post_invoice invoice).
FINAL_USAGE_REASON = "final_usage"


def same_period_reasons(billing_reason: str) -> tuple[str, ...]:
    """The billing reasons whose invoices share one database uniqueness rule per subscription
    period with `billing_reason` (the three constraints of Invoice); () when it has none."""
    if billing_reason in PERIOD_BILLING_REASONS:
        return PERIOD_BILLING_REASONS
    if billing_reason in (POST_INVOICE_REASON, FINAL_USAGE_REASON):
        return (billing_reason,)
    return ()


class Invoice(TenantOwnedModel):
    class Status(models.TextChoices):
        DRAFT = "draft"
        OPEN = "open"
        PAID = "paid"
        VOID = "void"
        UNCOLLECTIBLE = "uncollectible"

    class BillingReason(models.TextChoices):
        SUBSCRIPTION_START = "subscription_start"
        RENEWAL = "renewal"
        CHANGE = "change"
        TRIAL_CONVERSION = "trial_conversion"
        MANUAL = "manual"
        CHECKOUT = "checkout"
        POST_INVOICE = "post_invoice"
        FINAL_USAGE = "final_usage"

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, related_name="invoices"
    )
    subscription = models.ForeignKey(
        "subscriptions.Subscription",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="invoices",
    )
    number = models.CharField(max_length=64, null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    billing_reason = models.CharField(max_length=20, choices=BillingReason.choices)
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    sub_total = models.BigIntegerField(default=0)
    tax_total = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)
    amount_due = models.BigIntegerField(default=0)
    paid = models.BooleanField(default=False)
    reverse_charge = models.BooleanField(default=False)
    finalised_at = models.DateTimeField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    biller_address = models.JSONField(default=dict, blank=True)
    payee_address = models.JSONField(default=dict, blank=True)
    # Content hash of the last rendered PDF (the render cache key).
    pdf_hash = models.CharField(max_length=64, blank=True, default="")
    # Dunning: failed charge attempts and when the next retry is due (null: none scheduled).
    attempt_count = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "number"], name="invoice_number_unique"),
            models.UniqueConstraint(
                fields=["tenant", "subscription", "period_start"],
                condition=Q(billing_reason__in=PERIOD_BILLING_REASONS),
                name="invoice_one_per_subscription_period",
            ),
            models.UniqueConstraint(
                fields=["tenant", "subscription", "period_start"],
                condition=Q(billing_reason=POST_INVOICE_REASON),
                name="invoice_one_post_invoice_per_period",
            ),
            models.UniqueConstraint(
                fields=["tenant", "subscription", "period_start"],
                condition=Q(billing_reason=FINAL_USAGE_REASON),
                name="invoice_one_final_usage_per_period",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "customer"], name="invoice_customer_idx"),
            models.Index(fields=["tenant", "status"], name="invoice_status_idx"),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(next_attempt_at__isnull=False),
                name="invoice_dunning_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"draft {self.id}"


class InvoiceLine(TenantOwnedModel):
    """One line of an invoice. A line with no invoice is pending: a proration that goes on the
    subscription's next invoice, its amount (``sub_total``) not yet taxed."""

    class Kind(models.TextChoices):
        SUBSCRIPTION = "subscription"
        USAGE = "usage"
        PRORATION = "proration"
        ONE_OFF = "one_off"
        DISCOUNT = "discount"

    invoice = models.ForeignKey(
        Invoice, on_delete=models.CASCADE, null=True, blank=True, related_name="lines"
    )
    subscription = models.ForeignKey(
        "subscriptions.Subscription",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )
    position = models.PositiveIntegerField(default=0)
    description = models.CharField(max_length=500)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    quantity = models.DecimalField(max_digits=24, decimal_places=6, default=1)
    unit_price = models.DecimalField(max_digits=30, decimal_places=10, null=True, blank=True)
    tax_type = models.CharField(max_length=16, default="standard")
    including_tax = models.BooleanField(default=False)
    sub_total = models.BigIntegerField(default=0)
    tax_rate = models.DecimalField(max_digits=7, decimal_places=4, default=0)
    tax_total = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    metric = models.ForeignKey(
        "subscriptions.Metric", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    subscription_item = models.ForeignKey(
        "subscriptions.SubscriptionItem",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        indexes = [
            models.Index(
                fields=["subscription"],
                condition=Q(invoice__isnull=True),
                name="invoice_line_pending_idx",
            )
        ]

    def __str__(self) -> str:
        return self.description


class Payment(TenantOwnedModel):
    class Status(models.TextChoices):
        PENDING = "pending"
        COMPLETED = "completed"
        FAILED = "failed"
        PARTIALLY_REFUNDED = "partially_refunded"
        FULLY_REFUNDED = "fully_refunded"

    invoice = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="payments"
    )
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, related_name="payments"
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    payment_method = models.ForeignKey(
        PaymentMethod, on_delete=models.SET_NULL, null=True, blank=True, related_name="payments"
    )
    failure_reason = models.CharField(
        max_length=32, choices=FailureReason.choices, null=True, blank=True
    )
    external_reference = models.CharField(max_length=255, blank=True, default="")
    # The key the gateway was called with: a retry of the same attempt reuses it.
    idempotency_key = models.CharField(max_length=255, editable=False)
    refunded_amount = models.BigIntegerField(default=0)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"], name="payment_idempotency_key_unique"
            )
        ]
        indexes = [models.Index(fields=["tenant", "customer"], name="payment_customer_idx")]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} ({self.status})"

    @property
    def refundable_amount(self) -> int:
        return self.amount - self.refunded_amount


class Refund(TenantOwnedModel):
    class Status(models.TextChoices):
        STARTED = "started"
        ISSUED = "issued"
        FAILED = "failed"

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, related_name="refunds"
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=500, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.STARTED)
    billing_admin = models.CharField(max_length=255, blank=True, default="")
    external_reference = models.CharField(max_length=255, blank=True, default="")

    def __str__(self) -> str:
        return f"refund {self.amount} {self.currency}"


class Receipt(TenantOwnedModel):
    """Proof of a completed payment, rendered as a PDF on demand."""

    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="receipts")

    def __str__(self) -> str:
        return f"receipt {self.id}"


class SandboxCharge(TenantOwnedModel):
    """The sandbox gateway's ledger: one row per idempotency key, so a retried charge returns the
    first answer and never charges twice, across processes and restarts."""

    class Kind(models.TextChoices):
        CHARGE = "charge"
        REFUND = "refund"

    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.CHARGE)
    idempotency_key = models.CharField(max_length=255)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    gateway_reference = models.CharField(max_length=255)
    succeeded = models.BooleanField()
    failure_reason = models.CharField(max_length=32, null=True, blank=True)
    external_reference = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "kind", "idempotency_key"], name="sandbox_charge_key_unique"
            )
        ]

    def __str__(self) -> str:
        return self.external_reference
