"""Tenants (the companies that run their billing here), their API keys, staff membership, and
the stored answers of idempotent requests. Also the base every tenant-owned model builds on."""

import hashlib
import secrets
import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.timezone import now
from uuid6 import uuid7

API_KEY_PREFIX = "bk_"
API_KEY_DISPLAY_LENGTH = 11


def api_key_cache_key(key_hash: str) -> str:
    return f"api-key:{key_hash}"


def _forget_cached_api_keys(key_hashes: list[str]) -> None:
    """Drop resolved keys from the shared cache, now and again when the transaction commits (so a
    request racing the change cannot put the old row back for long)."""
    from django.core.cache import cache
    from django.db import transaction

    if not key_hashes:
        return
    names = [api_key_cache_key(key_hash) for key_hash in key_hashes]
    cache.delete_many(names)
    transaction.on_commit(lambda: cache.delete_many(names))


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value} is not a known IANA time zone.")


class TenantQuerySet(models.QuerySet):
    """A queryset that remembers whether it was scoped to one tenant, so the API's base view can
    refuse to serve one that was not (fail closed)."""

    _tenant_scoped = False

    def for_tenant(self, tenant):
        scoped = self.filter(tenant=tenant)
        scoped._tenant_scoped = True
        return scoped

    def _clone(self):
        clone = super()._clone()
        clone._tenant_scoped = self._tenant_scoped
        return clone

    @property
    def is_tenant_scoped(self) -> bool:
        return self._tenant_scoped


class TenantOwnedModel(models.Model):
    """Every domain row carries its tenant, also where it could be derived (DESIGN: Tenancy)."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=now, editable=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=255)
    currency = models.CharField(max_length=3, default="EUR")
    country = models.CharField(max_length=2, blank=True, default="")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    # Biller details printed on invoices.
    legal_name = models.CharField(max_length=255, blank=True, default="")
    tax_number = models.CharField(max_length=64, blank=True, default="")
    street_line_one = models.CharField(max_length=255, blank=True, default="")
    street_line_two = models.CharField(max_length=255, blank=True, default="")
    city = models.CharField(max_length=255, blank=True, default="")
    region = models.CharField(max_length=255, blank=True, default="")
    postcode = models.CharField(max_length=32, blank=True, default="")
    # Invoice settings.
    invoice_number_prefix = models.CharField(max_length=20, blank=True, default="INV-")
    payment_terms_days = models.PositiveSmallIntegerField(default=14)
    default_tax_rate = models.DecimalField(max_digits=7, decimal_places=4, default=Decimal("0"))
    invoice_changes_immediately = models.BooleanField(
        default=False,
        help_text="Invoice mid-period seat, quantity and plan changes at once instead of "
        "adding the proration to the next renewal invoice.",
    )
    dunning_retry_days = models.JSONField(
        default=list,
        blank=True,
        help_text="Days after a failed charge on which it is retried, e.g. [1, 3, 5].",
    )
    dunning_final_action = models.CharField(
        max_length=20,
        choices=[("disable", "Disable (overdue_payment_disabled)"), ("cancel", "Cancel")],
        default="disable",
    )
    created_at = models.DateTimeField(default=now, editable=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        # API keys are cached with their tenant: a changed tenant must not be served stale.
        _forget_cached_api_keys(list(self.api_keys.values_list("key_hash", flat=True)))


class TaxRule(TenantOwnedModel):
    """The tenant's tax rate for customers in one country and one tax type."""

    class TaxType(models.TextChoices):
        STANDARD = "standard"
        DIGITAL = "digital"
        PHYSICAL = "physical"

    country = models.CharField(max_length=2)
    tax_type = models.CharField(max_length=16, choices=TaxType.choices, default=TaxType.STANDARD)
    rate = models.DecimalField(max_digits=7, decimal_places=4)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "country", "tax_type"], name="tax_rule_unique_per_country_type"
            )
        ]

    def __str__(self) -> str:
        return f"{self.country} {self.tax_type} {self.rate}%"


def hash_api_key(clear_key: str) -> str:
    return hashlib.sha256(clear_key.encode()).hexdigest()


class ApiKey(models.Model):
    """An API key: only its SHA-256 is stored; the clear key is shown once, at creation."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=API_KEY_DISPLAY_LENGTH, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        _forget_cached_api_keys([self.key_hash])

    @staticmethod
    def generate_clear_key() -> str:
        return API_KEY_PREFIX + secrets.token_urlsafe(32)

    def is_usable(self, at=None) -> bool:
        at = at or now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > at


class TenantMembership(models.Model):
    """Staff user ↔ tenant: staff see in the admin only the tenants they are members of."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_memberships"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(default=now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant}"


class IdempotencyRecord(models.Model):
    """The first answer to a request sent with an `Idempotency-Key`, replayed to its retries."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    status_code = models.PositiveSmallIntegerField(null=True)
    # The rendered bytes, so a replay is identical to the first answer byte for byte.
    response_body = models.TextField(blank=True, default="")
    content_type = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(default=now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="idempotency_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"
