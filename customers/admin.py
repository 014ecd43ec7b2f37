from django.contrib import admin

from customers import services
from customers.models import Customer, Namespace
from tenants.admin_base import TenantScopedAdmin, TenantScopedInlineMixin


class NamespaceInline(TenantScopedInlineMixin, admin.TabularInline):
    model = Namespace
    extra = 0
    fields = ["name", "description", "created_at"]
    readonly_fields = ["name", "created_at"]
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Customer)
class CustomerAdmin(TenantScopedAdmin):
    list_display = [
        "email",
        "name",
        "company_name",
        "country",
        "billing_type",
        "status",
        "tenant",
        "created_at",
    ]
    list_filter = ["status", "billing_type", "type", "tenant"]
    search_fields = ["email", "name", "company_name", "reference", "external_reference", "id"]
    readonly_fields = ["id", "default_namespace", "created_at", "updated_at"]
    list_select_related = ["tenant"]
    inlines = [NamespaceInline]
    actions = ["disable_customers", "enable_customers"]
    fieldsets = [
        (None, {"fields": ["id", "tenant", "email", "name", "status", "default_namespace"]}),
        (
            "Billing",
            {
                "fields": [
                    "billing_type",
                    "type",
                    "currency",
                    "tax_number",
                    "standard_tax_rate",
                    "digital_tax_rate",
                    "invoice_format",
                ]
            },
        ),
        (
            "Address",
            {
                "fields": [
                    "company_name",
                    "street_line_one",
                    "street_line_two",
                    "city",
                    "region",
                    "postcode",
                    "country",
                ]
            },
        ),
        (
            "Other",
            {
                "fields": [
                    "reference",
                    "external_reference",
                    "locale",
                    "brand",
                    "marketing_opt_in",
                    "metadata",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
    ]

    def save_model(self, request, obj, form, change):
        if change:
            fields = {
                name: getattr(obj, name)
                for name in form.changed_data
                if name in services.CUSTOMER_FIELDS
            }
            services.customer_update(customer=obj, **fields)
        else:
            fields = {
                name: form.cleaned_data[name]
                for name in form.cleaned_data
                if name in services.CUSTOMER_FIELDS
            }
            created = services.customer_create(tenant=obj.tenant, **fields)
            obj.pk, obj.default_namespace = created.pk, created.default_namespace
            obj._state.adding = False

    @admin.action(description="Disable the selected customers")
    def disable_customers(self, request, queryset):
        for customer in queryset:
            services.customer_disable(customer=customer)
        self.message_user(request, f"Disabled {queryset.count()} customer(s).")

    @admin.action(description="Enable the selected customers")
    def enable_customers(self, request, queryset):
        for customer in queryset:
            services.customer_enable(customer=customer)
        self.message_user(request, f"Enabled {queryset.count()} customer(s).")


@admin.register(Namespace)
class NamespaceAdmin(TenantScopedAdmin):
    list_display = ["name", "customer", "tenant", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["name", "customer__email"]
    list_select_related = ["customer", "tenant"]
    raw_id_fields = ["customer"]

    def get_readonly_fields(self, request, obj=None):
        return ["name", "customer", "tenant"] if obj else []
