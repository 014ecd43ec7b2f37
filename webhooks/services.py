"""The one way to announce a business event (`emit`), and the delivery of events to endpoints."""

import datetime as dt
import json
import logging
import time
import urllib.error
import urllib.request
import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from billing_project.bulk import fast_insert
from tenants.api.fields import timestamp_text
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

logger = logging.getLogger(__name__)

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
MAX_ATTEMPTS = 8
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 6 * 3600
DELIVERY_TIMEOUT_SECONDS = 10
DELIVERY_BATCH = 100


class _BatchEncoder(DjangoJSONEncoder):
    """DjangoJSONEncoder's output, for the many payloads of one emit_many call: ids take the
    short path, and each distinct date is formatted once."""

    def __init__(self):
        super().__init__()
        self._formatted: dict = {}

    def default(self, o):
        kind = type(o)
        if kind is uuid.UUID:
            return str(o)
        if kind is dt.datetime or kind is dt.date:
            key = (o, o.utcoffset() if kind is dt.datetime else None)
            text = self._formatted.get(key)
            if text is None:
                text = self._formatted[key] = super().default(o)
            return text
        return super().default(o)


def emit_many(*, tenant, events: list[tuple[str, dict]]) -> list[WebhookEvent]:
    """Record events in the caller's transaction (they exist exactly when the change does), with
    one pending delivery per subscribed endpoint; delivery starts when the transaction commits."""
    unknown = {event_type for event_type, _ in events} - EVENT_TYPES
    if unknown:
        raise ValueError(f"Unknown webhook event types: {sorted(unknown)}")
    if not events:
        return []
    now = timezone.now()
    # Positional construction (what the ORM does for rows it loads) skips the per-field default
    # and descriptor work of keyword construction; one timestamp for the events of one call.
    attnames = [f.attname for f in WebhookEvent._meta.concrete_fields]
    cache_tenant = WebhookEvent._meta.get_field("tenant").set_cached_value
    new_id = WebhookEvent._meta.pk.get_default
    values = {"tenant_id": tenant.pk, "created_at": now}
    encode = _BatchEncoder().encode
    texts: dict = {}
    created, encoded = [], []
    for event_type, data in events:
        # The stored payload is what its JSON reads back as (dates and ids as strings). Events
        # that share one payload (invoice.created and invoice.finalised) encode it once.
        text = texts.get(id(data))
        if text is None:
            text = texts[id(data)] = encode(data)
        values.update(id=new_id(), type=event_type, data=json.loads(text))
        event = WebhookEvent(*[values[name] for name in attnames])
        cache_tenant(event, tenant)
        created.append(event)
        encoded.append(text)
    fast_insert(WebhookEvent, created, prepared={"data": encoded})
    endpoints = [e for e in WebhookEndpoint.objects.for_tenant(tenant).filter(enabled=True)]
    deliveries = [
        WebhookDelivery(
            tenant=tenant,
            endpoint=endpoint,
            event=event,
            event_type=event.type,
            next_attempt_at=now,
        )
        for event in created
        for endpoint in endpoints
        if endpoint.wants(event.type)
    ]
    if deliveries:
        fast_insert(WebhookDelivery, deliveries)
        transaction.on_commit(_enqueue_delivery)
    return created


def emit(*, tenant, event_type: str, data: dict) -> WebhookEvent:
    return emit_many(tenant=tenant, events=[(event_type, data)])[0]


def _enqueue_delivery() -> None:
    from webhooks.tasks import deliver_due_webhooks

    try:
        deliver_due_webhooks.delay()
    except Exception:
        # The broker being down must not fail the request that emitted; beat retries the outbox.
        logger.warning("Could not enqueue webhook delivery; beat will pick it up", exc_info=True)


def retry_delay(attempt_count: int) -> dt.timedelta:
    """Exponential back-off: 30 s, 1 min, 2 min, … capped at 6 h."""
    return dt.timedelta(
        seconds=min(FIRST_RETRY_SECONDS * 2 ** (attempt_count - 1), MAX_RETRY_SECONDS)
    )


def event_payload(event: WebhookEvent) -> str:
    return json.dumps(
        {
            "id": str(event.id),
            "type": event.type,
            "created_at": timestamp_text(event.created_at),
            "data": event.data,
        },
        separators=(",", ":"),
    )


def signed_headers(*, secret: str, message_id: str, body: str, at: dt.datetime) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "billing-platform-webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=message_id, timestamp=at, data=body),
    }


def _send(delivery: WebhookDelivery) -> tuple[int | None, str, str, int]:
    body = event_payload(delivery.event)
    headers = signed_headers(
        secret=delivery.endpoint.secret,
        message_id=str(delivery.event_id),
        body=body,
        at=timezone.now(),
    )
    request = urllib.request.Request(
        delivery.endpoint.url, data=body.encode(), headers=headers, method="POST"
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_SECONDS) as response:
            status, text, error = response.status, response.read(1000).decode(errors="replace"), ""
    except urllib.error.HTTPError as exc:
        status, text, error = exc.code, exc.read(1000).decode(errors="replace"), f"HTTP {exc.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        status, text, error = None, "", str(getattr(exc, "reason", exc))[:500]
    return status, text, error, int((time.monotonic() - started) * 1000)


def delivery_attempt(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send one delivery now, record the attempt, schedule a retry or settle its status."""
    status_code, response_text, error, duration_ms = _send(delivery)
    now = timezone.now()
    succeeded = status_code is not None and 200 <= status_code < 300
    delivery.attempt_count += 1
    delivery.last_status_code = status_code
    delivery.last_error = error
    if succeeded:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
            WebhookDelivery.Status.SUCCEEDED,
            now,
            None,
        )
    elif delivery.attempt_count >= MAX_ATTEMPTS:
        delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
    else:
        delivery.next_attempt_at = now + retry_delay(delivery.attempt_count)
    with transaction.atomic():
        WebhookAttempt.objects.create(
            tenant_id=delivery.tenant_id,
            delivery=delivery,
            status_code=status_code,
            error=error,
            response_body=response_text[:1000],
            duration_ms=duration_ms,
        )
        delivery.save(
            update_fields=[
                "attempt_count",
                "last_status_code",
                "last_error",
                "status",
                "delivered_at",
                "next_attempt_at",
            ]
        )
    return delivery


def deliveries_send_due(*, now: dt.datetime | None = None, limit: int = DELIVERY_BATCH) -> int:
    """Send the deliveries that are due. Each is claimed by pushing its next attempt into the
    future under a row lock (SKIP LOCKED), so concurrent workers never send one twice at once."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at")[:limit]
            .values_list("pk", flat=True)
        )
        WebhookDelivery.objects.filter(pk__in=due).update(
            next_attempt_at=now + dt.timedelta(seconds=DELIVERY_TIMEOUT_SECONDS * 3)
        )
    deliveries = WebhookDelivery.objects.filter(pk__in=due).select_related("event", "endpoint")
    for delivery in deliveries:
        try:
            delivery_attempt(delivery=delivery)
        except Exception:
            logger.exception("Webhook delivery %s failed unexpectedly", delivery.pk)
    return len(due)


def endpoint_create(
    *, tenant, url: str, events: list[str] | None = None, description: str = ""
) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        tenant=tenant, url=url, events=sorted(set(events or [])), description=description
    )


def endpoint_update(*, endpoint: WebhookEndpoint, **fields) -> WebhookEndpoint:
    allowed = {"url", "events", "description", "enabled"}
    if set(fields) - allowed:
        raise TypeError(f"Webhook endpoints allow updating only {sorted(allowed)}")
    if "events" in fields:
        fields["events"] = sorted(set(fields["events"]))
    for name, value in fields.items():
        setattr(endpoint, name, value)
    endpoint.save()
    return endpoint
