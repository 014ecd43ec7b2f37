"""Customers of a tenant and their namespaces (the unit that usage, quotas and reports count in)."""

from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from tenants.models import TenantOwnedModel

NAMESPACE_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
validate_namespace_name = RegexValidator(
    NAMESPACE_NAME_PATTERN,
    "name must be a DNS label: a lower-case letter, then up to 62 lower-case letters, "
    "digits or hyphens",
)


class Customer(TenantOwnedModel):
    class BillingType(models.TextChoices):
        CARD = "card"
        INVOICE = "invoice"

    class Type(models.TextChoices):
        INDIVIDUAL = "individual"
        BUSINESS = "business"

    class InvoiceFormat(models.TextChoices):
        PDF = "pdf"
        XRECHNUNG = "xrechnung"

    class Status(models.TextChoices):
        ACTIVE = "active"
        DISABLED = "disabled"

    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=255, blank=True, default="")
    tax_number = models.CharField(max_length=64, blank=True, default="")
    standard_tax_rate = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    digital_tax_rate = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    billing_type = models.CharField(
        max_length=10, choices=BillingType.choices, default=BillingType.CARD
    )
    type = models.CharField(max_length=12, choices=Type.choices, default=Type.INDIVIDUAL)
    reference = models.CharField(max_length=255, blank=True, default="")
    external_reference = models.CharField(max_length=255, blank=True, default="")
    company_name = models.CharField(max_length=255, blank=True, default="")
    street_line_one = models.CharField(max_length=255, blank=True, default="")
    street_line_two = models.CharField(max_length=255, blank=True, default="")
    city = models.CharField(max_length=255, blank=True, default="")
    region = models.CharField(max_length=255, blank=True, default="")
    country = models.CharField(max_length=2, blank=True, default="")
    postcode = models.CharField(max_length=32, blank=True, default="")
    locale = models.CharField(max_length=16, default="en")
    brand = models.CharField(max_length=64, default="default")
    invoice_format = models.CharField(
        max_length=10, choices=InvoiceFormat.choices, default=InvoiceFormat.PDF
    )
    marketing_opt_in = models.BooleanField(default=False)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    currency = models.CharField(max_length=3, blank=True, default="")
    default_namespace = models.ForeignKey(
        "customers.Namespace",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint("tenant", Lower("email"), name="customer_email_unique"),
        ]
        indexes = [
            models.Index(fields=["tenant", "reference"], name="customer_reference_idx"),
            models.Index(fields=["tenant", "external_reference"], name="customer_extref_idx"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Namespace(TenantOwnedModel):
    """A customer's namespace (seed 003). Every customer has a default one; names are unique per
    tenant and immutable, since events, quotas and reports refer to them by name."""

    name = models.CharField(max_length=63, validators=[validate_namespace_name])
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="namespaces")
    description = models.CharField(max_length=1024, blank=True, default="")
    labels = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="namespace_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class UsageLimit(TenantOwnedModel):
    """A spend threshold on a customer's usage cost in the current period (BillaBear semantics):
    WARNING announces it once per period (`usage_limit.warning`), DISABLE disables the customer
    (`usage_limit.disabled`), after which its events are refused. Evaluated by `usage.services`."""

    class Action(models.TextChoices):
        WARNING = "WARNING"
        DISABLE = "DISABLE"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="usage_limits")
    amount = models.BigIntegerField(help_text="Minor units of the customer's billing currency.")
    action = models.CharField(max_length=8, choices=Action.choices)
    # The start of the period the limit last fired in: it fires at most once per period.
    triggered_period_start = models.DateTimeField(null=True, blank=True, editable=False)
    triggered_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        indexes = [models.Index(fields=["tenant", "customer"], name="usage_limit_customer_idx")]

    def __str__(self) -> str:
        return f"{self.action} at {self.amount} for {self.customer_id}"
