"""The one way to announce a business event: `emit(tenant=..., event_type=..., data=...)`."""

import json

from django.core.serializers.json import DjangoJSONEncoder

from webhooks.models import WebhookEvent

EVENT_TYPES = frozenset(
    {
        "customer.created",
        "customer.updated",
        "customer.disabled",
        "customer.enabled",
        "subscription.created",
        "subscription.updated",
        "subscription.renewed",
        "subscription.cancelled",
        "subscription.trial_ending",
        "invoice.created",
        "invoice.finalised",
        "invoice.paid",
        "invoice.payment_failed",
        "payment.succeeded",
        "payment.refunded",
        "usage_limit.warning",
        "usage_limit.disabled",
        "quota.exceeded",
        "plan_transition.finished",
        "plan_transition.failed",
    }
)


def emit(*, tenant, event_type: str, data: dict) -> WebhookEvent:
    """Record the event in the caller's transaction: it exists exactly when the change does."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"Unknown webhook event type: {event_type}")
    payload = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    return WebhookEvent.objects.create(tenant=tenant, type=event_type, data=payload)
