"""Webhook events: every business event is recorded here by `emit()` in the same transaction as the
change it describes (a transactional outbox), then delivered to the tenant's endpoints."""

from django.db import models

from tenants.models import TenantOwnedModel


class WebhookEvent(TenantOwnedModel):
    type = models.CharField(max_length=64, db_index=True)
    data = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["tenant", "type", "created_at"], name="webhook_event_idx")]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"
