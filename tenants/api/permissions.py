from rest_framework.permissions import BasePermission

from tenants.models import ApiKey


class HasTenantApiKey(BasePermission):
    message = "A valid API key is required (X-BILLING-API-KEY header or api_key parameter)."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, ApiKey)
