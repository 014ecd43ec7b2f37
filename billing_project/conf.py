"""The platform's tunables: `settings.BILLING` overlaid on these defaults, read in one place."""

from django.conf import settings

DEFAULTS = {
    "RATE_LIMIT": "1200/m",
    "INGEST_RATE_LIMIT": "60000/m",
    # Counts a worker thread takes from a key's rate-limit bucket at once on the hot read path
    # (tenants.api.hot.RateCount); 1 counts every request in Redis.
    "RATE_LIMIT_RESERVATION": 10,
    "IDEMPOTENCY_TTL_HOURS": 24,
    "PAYMENT_GATEWAY": "sandbox",
}


class BillingSettings:
    """Attribute access to `settings.BILLING`, falling back to `DEFAULTS` (read on every access,
    so `override_settings` in tests takes effect)."""

    def __getattr__(self, name: str):
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown billing setting: {name}")
        return getattr(settings, "BILLING", {}).get(name, DEFAULTS[name])


billing_settings = BillingSettings()
