"""Webhooks: every business event is recorded by `emit()` in the same transaction as the change it
describes (a transactional outbox), with one delivery per subscribed endpoint; a Celery task sends
the deliveries, signed per Standard Webhooks, and records every attempt."""

import base64
import secrets

from django.db import models

from tenants.models import TenantOwnedModel


def generate_signing_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookEndpoint(TenantOwnedModel):
    url = models.URLField(max_length=2048)
    events = models.JSONField(default=list, blank=True, help_text="Event types; empty means all.")
    description = models.CharField(max_length=255, blank=True, default="")
    enabled = models.BooleanField(default=True)
    # Kept in clear because signing needs it; returned by the API only once, at creation.
    secret = models.CharField(max_length=100, default=generate_signing_secret, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return self.enabled and (not self.events or event_type in self.events)


class WebhookEvent(TenantOwnedModel):
    type = models.CharField(max_length=64, db_index=True)
    data = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["tenant", "type", "created_at"], name="webhook_event_idx")]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class WebhookDelivery(TenantOwnedModel):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="webhook_delivery_unique")
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx")
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(TenantOwnedModel):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    response_body = models.CharField(max_length=1000, blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"attempt {self.id} ({self.status_code or self.error})"
