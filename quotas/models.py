"""Namespace quotas (seed 003) and the record of the exceedances announced, and plan transitions:
a customer's move to another plan, run by a worker, optionally after staff approval."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from tenants.models import TenantOwnedModel


class Quota(TenantOwnedModel):
    """A named set of limits on one namespace. `spec` holds `object_limits` and `resource_limits`
    (`{<metric code>: {maximum}}`) and `api_limits` (`{<metric code>: {rate, burst, unit}}`).
    `resource_version` grows by one on every replace, for optimistic concurrency."""

    namespace = models.ForeignKey(
        "customers.Namespace", on_delete=models.CASCADE, related_name="quotas"
    )
    name = models.CharField(max_length=63)
    description = models.CharField(max_length=1024, blank=True, default="")
    labels = models.JSONField(default=dict, blank=True)
    disable = models.BooleanField(default=False, help_text="A disabled quota does not bind.")
    spec = models.JSONField(default=dict, blank=True)
    resource_version = models.PositiveBigIntegerField(default=1, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "namespace", "name"], name="quota_name_unique_per_namespace"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.namespace_id}/{self.name}"


class QuotaExceedance(TenantOwnedModel):
    """One refusal announced (`quota.exceeded`): at most one per namespace, metric and period."""

    namespace = models.ForeignKey("customers.Namespace", on_delete=models.CASCADE, related_name="+")
    code = models.CharField(max_length=100)
    kind = models.CharField(max_length=16)
    period_start = models.DateTimeField()
    maximum = models.DecimalField(max_digits=30, decimal_places=10, null=True)
    attempted = models.DecimalField(max_digits=40, decimal_places=10, null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "namespace", "code", "kind", "period_start"],
                name="quota_exceedance_once_per_period",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.kind} @ {self.period_start:%Y-%m-%d}"


class PlanTransition(TenantOwnedModel):
    class State(models.TextChoices):
        CREATING = "STATE_CREATING"
        WAITING_FOR_APPROVAL = "STATE_WAITING_FOR_APPROVAL"
        FINISHED = "STATE_FINISHED"
        FAILED = "STATE_FAILED"

    namespace = models.ForeignKey(
        "customers.Namespace", on_delete=models.CASCADE, related_name="plan_transitions"
    )
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="plan_transitions"
    )
    subscription = models.ForeignKey(
        "subscriptions.Subscription",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    from_plan = models.ForeignKey(
        "subscriptions.SubscriptionPlan",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    to_plan = models.ForeignKey(
        "subscriptions.SubscriptionPlan", on_delete=models.PROTECT, related_name="+"
    )
    state = models.CharField(max_length=32, choices=State.choices, default=State.CREATING)
    # Add-on changes and the payment method to use; a card token is replaced by the id of the
    # payment method made from it as soon as the worker has used it.
    payload = models.JSONField(default=dict, blank=True)
    requires_manual_approval = models.BooleanField(default=False)
    failure_reason = models.CharField(max_length=1024, blank=True, default="")
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["state", "updated_at"], name="plan_transition_state_idx")]

    def __str__(self) -> str:
        return f"{self.from_plan_id} → {self.to_plan_id} ({self.state})"
