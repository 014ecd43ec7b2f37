"""Writes for tenants: creating tenants and API keys, revoking keys, idempotency records."""

import datetime as dt
import hashlib
from dataclasses import dataclass

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from billing_project.billing_math import is_valid_currency
from billing_project.conf import billing_settings
from tenants.models import (
    API_KEY_DISPLAY_LENGTH,
    ApiKey,
    IdempotencyRecord,
    Tenant,
    api_key_cache_key,
    hash_api_key,
    validate_timezone,
)
from tenants.selectors import API_KEY_CACHE_SECONDS

LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class TenantInputError(ValueError):
    """Bad input to a tenant operation, with a message meant for the operator."""


@transaction.atomic
def tenant_create(
    *, slug: str, name: str, currency: str = "EUR", country: str = "", timezone_name: str = "UTC"
) -> Tenant:
    currency = currency.upper()
    country = country.upper()
    if not is_valid_currency(currency):
        raise TenantInputError(f"{currency} is not an ISO 4217 currency code.")
    if country and (len(country) != 2 or not country.isalpha()):
        raise TenantInputError(f"{country} is not an ISO 3166-1 alpha-2 country code.")
    try:
        validate_timezone(timezone_name)
    except Exception as exc:
        raise TenantInputError(f"{timezone_name} is not a known IANA time zone.") from exc
    if Tenant.objects.filter(slug=slug).exists():
        raise TenantInputError(f"A tenant with slug {slug!r} exists already.")
    return Tenant.objects.create(
        slug=slug,
        name=name,
        currency=currency,
        country=country,
        timezone=timezone_name,
        legal_name=name,
    )


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    clear_key: str


def api_key_create(
    *, tenant: Tenant, name: str = "default", expires_at: dt.datetime | None = None
) -> IssuedApiKey:
    clear_key = ApiKey.generate_clear_key()
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=clear_key[:API_KEY_DISPLAY_LENGTH],
        key_hash=hash_api_key(clear_key),
        expires_at=expires_at,
    )
    return IssuedApiKey(api_key=api_key, clear_key=clear_key)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_record_use(*, key_id, at=None) -> None:
    """Set `last_used_at`, unless another request of the same minute already did."""
    at = at or timezone.now()
    ApiKey.objects.filter(pk=key_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=at - LAST_USED_RESOLUTION)
    ).update(last_used_at=at)


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use, at most once a minute per key, so authentication stays a single read."""
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    api_key_record_use(key_id=api_key.pk, at=now)
    api_key.last_used_at = now
    # Keep the cached copy in step, so the next requests of this minute do not write again.
    cache.set(api_key_cache_key(api_key.key_hash), api_key, API_KEY_CACHE_SECONDS)


# --- Idempotency ------------------------------------------------------------------------------


def request_fingerprint(*, method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), b"\0", path.encode(), b"\0", body):
        digest.update(part)
    return digest.hexdigest()


class IdempotencyConflict(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def idempotency_begin(*, tenant: Tenant, key: str, fingerprint: str):
    """Claim `key` for this request. Returns `(record, None)` when the request is new, or
    `(None, record)` with the completed record to replay. Raises `IdempotencyConflict` when the key
    was used with another body or its first request is still running. The claim is committed at
    once (its own transaction), so a concurrent request with the same key sees it."""
    cutoff = timezone.now() - dt.timedelta(hours=billing_settings.IDEMPOTENCY_TTL_HOURS)
    for _attempt in range(2):
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    tenant=tenant, key=key, fingerprint=fingerprint
                )
            return record, None
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(tenant=tenant, key=key).first()
            if existing is None:
                continue
            if existing.created_at < cutoff:
                IdempotencyRecord.objects.filter(pk=existing.pk, created_at__lt=cutoff).delete()
                continue
            if existing.fingerprint != fingerprint:
                raise IdempotencyConflict(
                    "Idempotency-Key was already used with a different request."
                ) from None
            if existing.state == IdempotencyRecord.State.IN_PROGRESS:
                raise IdempotencyConflict(
                    "A request with this Idempotency-Key is still being processed."
                ) from None
            return None, existing
    raise IdempotencyConflict("Idempotency-Key could not be claimed; retry the request.")


def idempotency_complete(
    *, record: IdempotencyRecord, status_code: int, body: str, content_type: str
) -> None:
    """Store the answer to replay; a server error is not stored, so the client may retry."""
    if status_code >= 500:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state=IdempotencyRecord.State.COMPLETED,
        status_code=status_code,
        response_body=body,
        content_type=content_type,
    )


def idempotency_prune(*, now: dt.datetime | None = None) -> int:
    now = now or timezone.now()
    cutoff = now - dt.timedelta(hours=billing_settings.IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
