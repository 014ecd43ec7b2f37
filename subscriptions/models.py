"""The catalog (products, prices, metrics, features, plans, vouchers) and what customers bought from
it (subscriptions and their priced items). State changes go through `subscriptions.services`."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from billing_project import billing_math
from tenants.models import TenantOwnedModel


class TaxType(models.TextChoices):
    STANDARD = "standard"
    DIGITAL = "digital"
    PHYSICAL = "physical"


class Schedule(models.TextChoices):
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"
    ONE_OFF = "one-off"


class Product(TenantOwnedModel):
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")
    external_reference = models.CharField(max_length=255, blank=True, default="")
    tax_type = models.CharField(max_length=16, choices=TaxType.choices, default=TaxType.STANDARD)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["tenant", "name"], name="product_name_idx")]

    def __str__(self) -> str:
        return self.name


class Metric(TenantOwnedModel):
    """A billable metric: how the usage events with this `code` are aggregated over a period."""

    class AggregationMethod(models.TextChoices):
        COUNT = "count"
        SUM = "sum"
        MAX = "max"
        UNIQUE_COUNT = "unique_count"
        LATEST = "latest"

    name = models.CharField(max_length=255)
    code = models.CharField(max_length=100)
    aggregation_method = models.CharField(
        max_length=16, choices=AggregationMethod.choices, default=AggregationMethod.COUNT
    )
    aggregation_property = models.CharField(max_length=255, blank=True, default="")
    filters = models.JSONField(default=list, blank=True)
    unit_name = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="metric_code_unique"),
        ]

    def __str__(self) -> str:
        return self.code


class Price(TenantOwnedModel):
    class Type(models.TextChoices):
        FIXED_PRICE = "fixed_price"
        PER_UNIT = "per_unit"
        PACKAGE = "package"
        TIERED_VOLUME = "tiered_volume"
        TIERED_GRADUATED = "tiered_graduated"

    class MetricType(models.TextChoices):
        RESETTABLE = "resettable"
        CONTINUOUS = "continuous"

    TIERED_TYPES = frozenset({Type.TIERED_VOLUME, Type.TIERED_GRADUATED})

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="prices")
    amount = models.BigIntegerField(default=0, help_text="Minor units (1818 EUR = 18.18 EUR).")
    currency = models.CharField(max_length=3)
    recurring = models.BooleanField(default=True)
    schedule = models.CharField(max_length=8, choices=Schedule.choices, blank=True, default="")
    including_tax = models.BooleanField(default=False)
    public = models.BooleanField(default=True)
    external_reference = models.CharField(max_length=255, blank=True, default="")
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.FIXED_PRICE)
    units = models.PositiveIntegerField(null=True, blank=True, help_text="Package size.")
    tiers = models.JSONField(null=True, blank=True)
    usage = models.BooleanField(default=False)
    metric = models.ForeignKey(
        Metric, on_delete=models.PROTECT, null=True, blank=True, related_name="prices"
    )
    metric_type = models.CharField(
        max_length=12, choices=MetricType.choices, default=MetricType.RESETTABLE
    )

    def __str__(self) -> str:
        schedule = f"/{self.schedule}" if self.schedule else ""
        return f"{self.product} {billing_math.format_money(self.amount, self.currency)}{schedule}"

    def clean(self):
        errors = price_rule_errors(
            recurring=self.recurring,
            schedule=self.schedule,
            currency=self.currency,
            type=self.type,
            units=self.units,
            tiers=self.tiers,
            usage=self.usage,
            metric=self.metric,
        )
        if errors:
            raise ValidationError(errors)

    def amount_for(self, quantity) -> int:
        """What this price costs for `quantity` units over one period, in minor units."""
        return billing_math.price_amount(
            self.type,
            Decimal(quantity),
            amount=self.amount,
            units=self.units,
            tiers=billing_math.parse_tiers(self.tiers) if self.tiers else None,
            currency=self.currency,
        )


def price_rule_errors(
    *, recurring, schedule, currency, type, units, tiers, usage, metric
) -> dict[str, list[str]]:
    """The cross-field rules of a price, shared by the API serializer and the admin form."""
    errors: dict[str, list[str]] = {}
    if not billing_math.is_valid_currency(currency):
        errors["currency"] = [f"currency must be an upper-case ISO 4217 code, not {currency!r}"]
    if recurring and schedule in ("", None, Schedule.ONE_OFF):
        errors["schedule"] = ["schedule must be week, month or year when the price is recurring"]
    if not recurring and schedule not in ("", None, Schedule.ONE_OFF):
        errors["schedule"] = ["schedule must be empty or one-off when the price is not recurring"]
    if type in Price.TIERED_TYPES:
        if not tiers:
            errors["tiers"] = [f"tiers are required for a {type} price"]
        else:
            try:
                billing_math.parse_tiers(tiers)
            except (ValueError, TypeError) as exc:
                errors["tiers"] = [str(exc)]
    elif tiers:
        errors["tiers"] = [f"tiers are only allowed on tiered prices, not on a {type} price"]
    if type == Price.Type.PACKAGE and not units:
        errors["units"] = ["units (the package size, at least 1) are required for a package price"]
    if usage and metric is None:
        errors["metric"] = ["metric is required for a usage price"]
    return errors


class Feature(TenantOwnedModel):
    code = models.CharField(max_length=100)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="feature_code_unique"),
        ]

    def __str__(self) -> str:
        return self.code


class SubscriptionPlan(TenantOwnedModel):
    name = models.CharField(max_length=255)
    code_name = models.CharField(max_length=100)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="plans")
    public = models.BooleanField(default=True)
    per_seat = models.BooleanField(default=False)
    user_count = models.PositiveIntegerField(default=1)
    free = models.BooleanField(default=False)
    has_trial = models.BooleanField(default=False)
    trial_length_days = models.PositiveIntegerField(default=0)
    is_trial_standalone = models.BooleanField(default=False)
    is_addon = models.BooleanField(default=False)
    requires_manual_approval = models.BooleanField(default=False)
    features = models.ManyToManyField(Feature, blank=True, related_name="plans")
    prices = models.ManyToManyField(Price, blank=True, related_name="plans")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code_name"], name="plan_code_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class PlanLimit(TenantOwnedModel):
    """A plan's limit of one feature; a feature code equal to a metric code is also the default
    quota of that metric for the plan's subscribers."""

    plan = models.ForeignKey(SubscriptionPlan, on_delete=models.CASCADE, related_name="limits")
    feature = models.ForeignKey(Feature, on_delete=models.PROTECT, related_name="limits")
    limit = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "plan", "feature"], name="plan_limit_unique_feature"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan}: {self.feature} ≤ {self.limit}"


class Voucher(TenantOwnedModel):
    class Type(models.TextChoices):
        PERCENTAGE = "percentage"
        FIXED_CREDIT = "fixed_credit"

    class Duration(models.TextChoices):
        ONCE = "once"
        REPEATING = "repeating"
        FOREVER = "forever"

    code = models.CharField(max_length=100)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.PERCENTAGE)
    percentage = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    amounts = models.JSONField(
        default=list, blank=True, help_text='Fixed credits per currency: [{"currency", "amount"}].'
    )
    duration = models.CharField(max_length=12, choices=Duration.choices, default=Duration.ONCE)
    duration_in_cycles = models.PositiveIntegerField(null=True, blank=True)
    max_redemptions = models.PositiveIntegerField(null=True, blank=True)
    disabled = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="voucher_code_unique"),
        ]

    def __str__(self) -> str:
        return self.code

    def credit_for(self, currency: str) -> int | None:
        """The fixed credit in `currency` (minor units), None when the voucher has none there."""
        for entry in self.amounts or []:
            if entry.get("currency") == currency:
                return int(entry["amount"])
        return None

    @property
    def cycles(self) -> int | None:
        """How many invoices the voucher discounts; None is every one (forever)."""
        if self.duration == self.Duration.ONCE:
            return 1
        if self.duration == self.Duration.REPEATING:
            return self.duration_in_cycles or 1
        return None


class VoucherRedemption(TenantOwnedModel):
    """A voucher applied to a customer; it discounts the customer's next `remaining_cycles`
    invoices (None: all of them) while `active`."""

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="voucher_redemptions"
    )
    voucher = models.ForeignKey(Voucher, on_delete=models.PROTECT, related_name="redemptions")
    remaining_cycles = models.PositiveIntegerField(null=True, blank=True)
    redeemed_at = models.DateTimeField(default=timezone.now)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "customer", "voucher"], name="voucher_redeemed_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.voucher} for {self.customer}"


class Subscription(TenantOwnedModel):
    class Status(models.TextChoices):
        TRIAL_ACTIVE = "trial_active"
        ACTIVE = "active"
        PENDING_CANCEL = "pending_cancel"
        OVERDUE_PAYMENT_OPEN = "overdue_payment_open"
        OVERDUE_PAYMENT_DISABLED = "overdue_payment_disabled"
        CANCELLED = "cancelled"
        BLOCKED = "blocked"
        TRIAL_ENDED = "trial_ended"

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, related_name="subscriptions"
    )
    plan = models.ForeignKey(SubscriptionPlan, on_delete=models.PROTECT, related_name="+")
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    seat_number = models.PositiveIntegerField(default=1)
    schedule = models.CharField(max_length=8, choices=Schedule.choices)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.ACTIVE)
    # Period n is billing_math.period_bounds(anchor, schedule, n); the current one is cached in
    # current_period_start/valid_until so that the renewal run can find due rows by index.
    anchor = models.DateTimeField()
    period_index = models.IntegerField(default=0)
    current_period_start = models.DateTimeField()
    valid_until = models.DateTimeField()
    started_at = models.DateTimeField(default=timezone.now)
    trial_ends_at = models.DateTimeField(null=True, blank=True)
    cancel_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    main_external_reference = models.CharField(max_length=255, blank=True, default="")
    child_external_reference = models.CharField(max_length=255, blank=True, default="")
    # Added in migration 0002: invoicing.0001 depends on this app's 0001 (invoices point at
    # subscriptions), so this app's first migration cannot point at invoicing.
    payment_method = models.ForeignKey(
        "invoicing.PaymentMethod",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    pending_change = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["status", "valid_until"], name="subscription_renewal_idx"),
            models.Index(fields=["tenant", "customer", "status"], name="subscription_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.plan} for {self.customer} ({self.status})"


class SubscriptionItem(TenantOwnedModel):
    class ItemType(models.TextChoices):
        PLAN = "plan"
        ADDON = "addon"
        USAGE = "usage"

    class CalcRuleType(models.TextChoices):
        UNIT = "unit"
        STEPPED = "stepped"
        STAGED = "staged"
        COMMIT = "commit"
        OVERCOMMIT = "overcommit"
        POST_INVOICE = "post_invoice"

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="items")
    item_type = models.CharField(max_length=8, choices=ItemType.choices)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0))
    metric = models.ForeignKey(
        Metric, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    calc_rule_type = models.CharField(
        max_length=16, choices=CalcRuleType.choices, null=True, blank=True
    )
    pricing = models.JSONField(null=True, blank=True, help_text="Seed 002's price object.")
    active_from = models.DateTimeField(null=True, blank=True)
    active_to = models.DateTimeField(null=True, blank=True)
    regions = models.JSONField(default=list, blank=True)
    description = models.CharField(max_length=255, blank=True, default="")
    comment = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["subscription", "item_type"], name="subscription_item_type_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.item_type} {self.product} x {self.quantity}"


class Checkout(TenantOwnedModel):
    """A quote (seed 001): one-off items and subscriptions for one customer, priced with tax,
    then paid in one invoice that starts the subscriptions."""

    class Status(models.TextChoices):
        OPEN = "open"
        PAYING = "paying"
        PAID = "paid"

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, related_name="checkouts"
    )
    name = models.CharField(max_length=255, blank=True, default="")
    slug = models.SlugField(max_length=255, blank=True, default="")
    brand = models.CharField(max_length=64, default="default")
    currency = models.CharField(max_length=3)
    # [{description, amount, currency, include_tax, tax_type}]
    items = models.JSONField(default=list, blank=True)
    # [{plan: id, price: id, seat_number}]
    subscriptions = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    invoice = models.ForeignKey(
        "invoicing.Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "slug"],
                condition=~models.Q(slug=""),
                name="checkout_slug_unique",
            )
        ]

    def __str__(self) -> str:
        return self.name or str(self.id)
