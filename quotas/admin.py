from django.contrib import admin, messages

from quotas import services
from quotas.models import PlanTransition, Quota, QuotaExceedance
from tenants.admin_base import TenantScopedAdmin
from tenants.api.errors import Conflict


@admin.register(Quota)
class QuotaAdmin(TenantScopedAdmin):
    list_display = ["name", "namespace", "disable", "resource_version", "tenant", "created_at"]
    list_filter = ["disable", "tenant"]
    search_fields = ["name", "namespace__name", "id"]
    list_select_related = ["namespace", "tenant"]
    raw_id_fields = ["namespace"]
    readonly_fields = ["resource_version", "created_at", "updated_at"]
    fields = [
        "tenant",
        "namespace",
        "name",
        "description",
        "labels",
        "disable",
        "spec",
        *readonly_fields,
    ]

    def get_readonly_fields(self, request, obj=None):
        # A quota is replaced, never renamed or moved (as over the API).
        if obj is not None:
            return ["tenant", "namespace", "name", *self.readonly_fields]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        # Through the services, as over the API: a staff edit is a replace (the version grows
        # atomically, so the next API client holding the old one gets 409), and a new quota
        # belongs to its namespace's tenant.
        fields = {
            "description": obj.description,
            "labels": obj.labels,
            "disable": obj.disable,
            "spec": obj.spec,
        }
        if change:
            services.quota_replace(quota=obj, **fields)
        else:
            obj.pk = services.quota_create(namespace=obj.namespace, name=obj.name, **fields).pk
            obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.quota_delete(quota=obj)


@admin.register(QuotaExceedance)
class QuotaExceedanceAdmin(TenantScopedAdmin):
    list_display = [
        "code",
        "kind",
        "namespace",
        "period_start",
        "maximum",
        "attempted",
        "created_at",
    ]
    list_filter = ["kind", "tenant"]
    search_fields = ["code", "namespace__name"]
    list_select_related = ["namespace"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(PlanTransition)
class PlanTransitionAdmin(TenantScopedAdmin):
    list_display = [
        "id",
        "namespace",
        "from_plan",
        "to_plan",
        "state",
        "requires_manual_approval",
        "created_at",
        "finished_at",
    ]
    list_filter = ["state", "requires_manual_approval", "tenant"]
    search_fields = ["id", "namespace__name", "customer__email"]
    list_select_related = ["namespace", "from_plan", "to_plan"]
    actions = ["approve", "reject"]
    readonly_fields = [
        "tenant",
        "namespace",
        "customer",
        "subscription",
        "from_plan",
        "to_plan",
        "state",
        "payload",
        "requires_manual_approval",
        "failure_reason",
        "approved_by",
        "approved_at",
        "started_at",
        "finished_at",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request):
        return False

    def _each(self, request, queryset, service, done: str):
        count = 0
        for transition in queryset:
            try:
                service(transition=transition, user=request.user)
                count += 1
            except Conflict as error:
                self.message_user(request, f"{transition.pk}: {error.detail}", messages.WARNING)
        if count:
            self.message_user(request, f"{count} plan transition(s) {done}.", messages.SUCCESS)

    @admin.action(description="Approve the selected plan transitions")
    def approve(self, request, queryset):
        self._each(request, queryset, services.plan_transition_approve, "approved")

    @admin.action(description="Reject the selected plan transitions")
    def reject(self, request, queryset):
        self._each(request, queryset, services.plan_transition_reject, "rejected")
