"""The platform's tunables: `settings.BILLING` overlaid on these defaults, read in one place."""

from django.conf import settings

DEFAULTS = {
    "RATE_LIMIT": "1200/m",
    "INGEST_RATE_LIMIT": "60000/m",
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
