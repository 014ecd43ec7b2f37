"""The one table of usage (API events and seed-004 usages alike), its hourly rollups maintained at
ingestion, and the per-tenant counter of seed-004 usage references."""

from django.db import models
from django.db.models import Q

from tenants.models import TenantOwnedModel

VALUE_MAX_DIGITS = 30
VALUE_DECIMAL_PLACES = 10


class UsageEvent(TenantOwnedModel):
    """One unit of usage data. Unique `(tenant, event_id)` makes ingestion idempotent.

    The customer, namespace and subscription references have no database constraint: this is the
    high-volume fact table, ingestion checks them (and locks the subscriptions it writes to), and
    per-row foreign-key triggers would cost more than the insert itself. Deleting what they point
    at is still refused by the ORM (PROTECT)."""

    # Nor for the tenant (ingestion writes only the caller's own), which needs no index of its
    # own either: the (tenant, event_id) unique index leads with it.
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    event_id = models.CharField(max_length=255)
    code = models.CharField(max_length=100, help_text="The metric code.")
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, db_constraint=False, related_name="+"
    )
    namespace = models.ForeignKey(
        "customers.Namespace",
        on_delete=models.PROTECT,
        db_constraint=False,
        db_index=False,  # usage_event_namespace_idx leads with it
        related_name="+",
    )
    subscription = models.ForeignKey(
        "subscriptions.Subscription",
        on_delete=models.PROTECT,
        db_constraint=False,
        db_index=False,  # usage_event_aggregation_idx leads with it
        null=True,
        blank=True,
        related_name="+",
    )
    value = models.DecimalField(
        max_digits=VALUE_MAX_DIGITS, decimal_places=VALUE_DECIMAL_PLACES, null=True, blank=True
    )
    properties = models.JSONField(default=dict, blank=True)
    timestamp = models.DateTimeField()
    # Seed-004 usages only.
    usage_reference = models.BigIntegerField(null=True, blank=True)
    usage_start = models.DateTimeField(null=True, blank=True)
    usage_end = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=255, blank=True, default="")
    # The number of the invoice that billed this usage; null until billed.
    renewal_order_reference = models.CharField(max_length=64, null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "event_id"], name="usage_event_id_unique"),
            models.UniqueConstraint(
                fields=["tenant", "usage_reference"],
                condition=Q(usage_reference__isnull=False),
                name="usage_reference_unique",
            ),
        ]
        indexes = [
            # Every index is paid for on each of millions of inserts: a subscription's and a
            # namespace's usage are read through these two (a subscription, a namespace belongs
            # to one tenant, so the tenant needs no column of its own here).
            models.Index(
                fields=["subscription", "code", "timestamp"], name="usage_event_aggregation_idx"
            ),
            models.Index(
                fields=["namespace", "code", "timestamp"], name="usage_event_namespace_idx"
            ),
            # Late events (unbilled, before the period being billed) are found through this one.
            models.Index(
                fields=["subscription", "code", "timestamp"],
                condition=Q(renewal_order_reference__isnull=True),
                name="usage_event_unbilled_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.event_id}"


class UsageRollup(models.Model):
    """The hourly aggregate of one metric for one (subscription, namespace): upserted in the same
    statement that inserts the events (from the rows really inserted, so duplicates never count),
    with the metric's filters and aggregation property applied. Cost estimates and invoices read
    whole hours here and only the partial hours at a period's edges from the events."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by the unique constraint, which leads with it.
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    subscription = models.ForeignKey(
        "subscriptions.Subscription",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        related_name="+",
    )
    # Indexed by usage_rollup_namespace_idx, which leads with it.
    namespace = models.ForeignKey(
        "customers.Namespace",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    code = models.CharField(max_length=100)
    hour = models.DateTimeField()
    event_count = models.BigIntegerField(default=0)
    value_sum = models.DecimalField(max_digits=40, decimal_places=VALUE_DECIMAL_PLACES, default=0)
    value_max = models.DecimalField(
        max_digits=VALUE_MAX_DIGITS, decimal_places=VALUE_DECIMAL_PLACES, null=True
    )
    latest_at = models.DateTimeField(null=True)
    latest_value = models.DecimalField(
        max_digits=VALUE_MAX_DIGITS, decimal_places=VALUE_DECIMAL_PLACES, null=True
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "subscription", "code", "hour", "namespace"],
                nulls_distinct=False,
                name="usage_rollup_unique",
            ),
        ]
        indexes = [
            # A namespace's period usage (the quota guard, quota/usage reports): a range scan
            # per (namespace, metric), whatever the namespace's history. The unique constraint
            # cannot serve it: subscription comes between tenant and hour.
            models.Index(fields=["namespace", "code", "hour"], name="usage_rollup_namespace_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.code} @ {self.hour:%Y-%m-%d %H}h: {self.event_count}"


class UsageReferenceSequence(models.Model):
    """The last seed-004 `usage_reference` handed out in a tenant (integers, per tenant)."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, primary_key=True)
    last_value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.last_value}"
