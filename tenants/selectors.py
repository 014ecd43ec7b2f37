"""Reads for tenants: resolving an API key, the tenants a staff user may see."""

from django.core.cache import cache
from django.db.models import QuerySet

from tenants.models import ApiKey, Tenant, api_key_cache_key, hash_api_key

# Resolved keys (with their tenant) are kept in the shared cache briefly, so authenticating is a
# cache read instead of a database query. Saving a key or its tenant clears the entries
# (ApiKey.save, Tenant.save), and expiry is checked on every request, so a revoked or expired key
# stops working at once.
API_KEY_CACHE_SECONDS = 30


def api_key_for_clear_key(clear_key: str) -> ApiKey | None:
    """The usable key for `clear_key` (not revoked, not expired), with its tenant, or None."""
    if not clear_key or len(clear_key) > 200:
        return None
    key_hash = hash_api_key(clear_key)
    cache_key = api_key_cache_key(key_hash)
    api_key = cache.get(cache_key)
    if api_key is None:
        api_key = ApiKey.objects.select_related("tenant").filter(key_hash=key_hash).first()
        if api_key is not None:
            cache.set(cache_key, api_key, API_KEY_CACHE_SECONDS)
    if api_key is None or not api_key.is_usable():
        return None
    return api_key


def tenants_for_user(user) -> QuerySet[Tenant]:
    if user.is_superuser:
        return Tenant.objects.all()
    return Tenant.objects.filter(memberships__user=user)
