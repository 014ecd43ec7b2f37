from django.contrib import admin, messages

from tenants import services
from tenants.admin_base import TenantScopedAdmin, TenantScopedInlineMixin
from tenants.models import ApiKey, TaxRule, Tenant, TenantMembership


class TaxRuleInline(TenantScopedInlineMixin, admin.TabularInline):
    model = TaxRule
    extra = 0
    fields = ["country", "tax_type", "rate"]


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    tenant_field = "pk"
    list_display = ["name", "slug", "currency", "country", "timezone", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [TaxRuleInline]
    fieldsets = [
        (None, {"fields": ["slug", "name", "currency", "country", "timezone"]}),
        (
            "Biller details",
            {
                "fields": [
                    "legal_name",
                    "tax_number",
                    "street_line_one",
                    "street_line_two",
                    "city",
                    "region",
                    "postcode",
                ]
            },
        ),
        (
            "Invoicing and dunning",
            {
                "fields": [
                    "invoice_number_prefix",
                    "payment_terms_days",
                    "default_tax_rate",
                    "invoice_changes_immediately",
                    "dunning_retry_days",
                    "dunning_final_action",
                ]
            },
        ),
    ]

    def get_queryset(self, request):
        queryset = Tenant.objects.all()
        if request.user.is_superuser:
            return queryset
        return queryset.filter(pk__in=[t.pk for t in self._member_tenants(request)])

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def save_related(self, request, form, formsets, change):
        for formset in formsets:
            for inline_form in formset.forms:
                if hasattr(inline_form.instance, "tenant_id"):
                    inline_form.instance.tenant = form.instance
        super().save_related(request, form, formsets, change)


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    list_display = [
        "prefix",
        "name",
        "tenant",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["tenant"]
    search_fields = ["prefix", "name"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    fields = ["tenant", "name", "expires_at", "prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_keys"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = services.api_key_create(
            tenant=obj.tenant, name=obj.name, expires_at=obj.expires_at
        )
        obj.pk = issued.api_key.pk
        obj.prefix, obj.key_hash = issued.api_key.prefix, issued.api_key.key_hash
        obj._state.adding = False
        messages.warning(
            request,
            f"The new API key is {issued.clear_key} — copy it now: it is stored hashed and "
            "will not be shown again.",
        )

    @admin.action(description="Revoke the selected API keys")
    def revoke_keys(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True))
        for api_key in keys:
            services.api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {len(keys)} API key(s).")


@admin.register(TenantMembership)
class TenantMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "created_at"]
    list_filter = ["tenant"]
    autocomplete_fields = ["user"]

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser
