"""Reads for tenants: resolving an API key, the tenants a staff user may see."""

from django.db.models import QuerySet

from tenants.models import ApiKey, Tenant, hash_api_key


def api_key_for_clear_key(clear_key: str) -> ApiKey | None:
    """The usable key for `clear_key` (not revoked, not expired), with its tenant, or None."""
    if not clear_key or len(clear_key) > 200:
        return None
    api_key = (
        ApiKey.objects.select_related("tenant").filter(key_hash=hash_api_key(clear_key)).first()
    )
    if api_key is None or not api_key.is_usable():
        return None
    return api_key


def tenants_for_user(user) -> QuerySet[Tenant]:
    if user.is_superuser:
        return Tenant.objects.all()
    return Tenant.objects.filter(memberships__user=user)
