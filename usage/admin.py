from django.contrib import admin

from customers.models import UsageLimit
from tenants.admin_base import TenantScopedAdmin
from usage.models import UsageEvent


@admin.register(UsageEvent)
class UsageEventAdmin(TenantScopedAdmin):
    """Read-only: usage is changed through the API (billed usage never)."""

    list_display = [
        "event_id",
        "code",
        "value",
        "timestamp",
        "customer_id",
        "subscription_id",
        "usage_reference",
        "renewal_order_reference",
        "tenant",
    ]
    list_filter = ["tenant", "code"]
    search_fields = ["event_id", "=code", "=renewal_order_reference"]
    date_hierarchy = "timestamp"
    show_full_result_count = False
    list_select_related = ["tenant"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UsageLimit)
class UsageLimitAdmin(TenantScopedAdmin):
    list_display = ["customer", "action", "amount", "triggered_period_start", "tenant"]
    list_filter = ["action", "tenant"]
    search_fields = ["customer__email"]
    raw_id_fields = ["customer"]
    readonly_fields = ["triggered_period_start", "triggered_at"]
    list_select_related = ["customer", "tenant"]
