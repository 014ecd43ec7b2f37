from django.contrib import admin

from tenants.admin_base import TenantScopedAdmin
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(TenantScopedAdmin):
    list_display = ["url", "tenant", "enabled", "created_at"]
    list_filter = ["enabled", "tenant"]
    search_fields = ["url", "description"]


@admin.register(WebhookEvent)
class WebhookEventAdmin(TenantScopedAdmin):
    list_display = ["type", "id", "tenant", "created_at"]
    list_filter = ["type", "tenant"]
    search_fields = ["id"]
    readonly_fields = ["type", "data", "tenant", "created_at"]


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["created_at", "status_code", "error", "duration_ms", "response_body"]
    fields = readonly_fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(TenantScopedAdmin):
    list_display = [
        "event_type",
        "endpoint",
        "status",
        "attempt_count",
        "last_status_code",
        "created_at",
    ]
    list_filter = ["status", "event_type", "tenant"]
    list_select_related = ["endpoint"]
    readonly_fields = [
        "endpoint",
        "event",
        "event_type",
        "status",
        "attempt_count",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "delivered_at",
        "created_at",
    ]
    inlines = [WebhookAttemptInline]
    actions = ["retry_now"]

    @admin.action(description="Retry the selected deliveries now")
    def retry_now(self, request, queryset):
        from django.utils import timezone

        count = queryset.exclude(status=WebhookDelivery.Status.SUCCEEDED).update(
            status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now()
        )
        self.message_user(request, f"{count} deliveries will be retried shortly.")
