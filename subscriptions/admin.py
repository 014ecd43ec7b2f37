from django import forms
from django.contrib import admin, messages

from subscriptions import services
from subscriptions.models import (
    Feature,
    Metric,
    PlanLimit,
    Price,
    Product,
    Subscription,
    SubscriptionItem,
    SubscriptionPlan,
    Voucher,
    VoucherRedemption,
)
from tenants.admin_base import TenantScopedAdmin


class TenantInline(admin.TabularInline):
    """Inline rows take their parent's tenant."""

    extra = 0
    exclude = ["tenant"]

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        parent = obj

        class TenantFormSet(formset):
            def save_new(self, form, commit=True):
                form.instance.tenant_id = (parent or self.instance).tenant_id
                return super().save_new(form, commit=commit)

        return TenantFormSet


class PriceInline(TenantInline):
    model = Price
    fields = ["amount", "currency", "recurring", "schedule", "type", "usage", "metric", "public"]
    show_change_link = True
    raw_id_fields = ["metric"]


@admin.register(Product)
class ProductAdmin(TenantScopedAdmin):
    list_display = ["name", "tax_type", "external_reference", "tenant", "created_at"]
    list_filter = ["tax_type", "tenant"]
    search_fields = ["name", "external_reference", "id"]
    list_select_related = ["tenant"]
    inlines = [PriceInline]


class PriceAdminForm(forms.ModelForm):
    class Meta:
        model = Price
        fields = [
            "tenant",
            "product",
            "amount",
            "currency",
            "recurring",
            "schedule",
            "including_tax",
            "public",
            "external_reference",
            "type",
            "units",
            "tiers",
            "usage",
            "metric",
            "metric_type",
        ]

    def clean(self):
        cleaned = super().clean()
        changed = set(self.changed_data) & services.PRICE_BILLING_FIELDS
        if self.instance.pk and changed and services._price_in_use(self.instance):
            raise forms.ValidationError(
                "Subscriptions use this price, so its billing terms cannot change; "
                "create a new price instead."
            )
        return cleaned


@admin.register(Price)
class PriceAdmin(TenantScopedAdmin):
    form = PriceAdminForm
    list_display = ["product", "amount", "currency", "schedule", "type", "usage", "public"]
    list_filter = ["currency", "schedule", "type", "usage", "public", "tenant"]
    search_fields = ["product__name", "external_reference", "id"]
    list_select_related = ["product", "tenant"]
    raw_id_fields = ["product", "metric"]


@admin.register(Metric)
class MetricAdmin(TenantScopedAdmin):
    list_display = ["code", "name", "aggregation_method", "unit_name", "tenant"]
    list_filter = ["aggregation_method", "tenant"]
    search_fields = ["code", "name"]


@admin.register(Feature)
class FeatureAdmin(TenantScopedAdmin):
    list_display = ["code", "name", "tenant"]
    list_filter = ["tenant"]
    search_fields = ["code", "name"]


class PlanLimitInline(TenantInline):
    model = PlanLimit
    fields = ["feature", "limit"]
    raw_id_fields = ["feature"]


@admin.register(SubscriptionPlan)
class SubscriptionPlanAdmin(TenantScopedAdmin):
    list_display = ["name", "code_name", "product", "per_seat", "is_addon", "public", "tenant"]
    list_filter = ["public", "per_seat", "is_addon", "has_trial", "tenant"]
    search_fields = ["name", "code_name", "id"]
    list_select_related = ["product", "tenant"]
    raw_id_fields = ["product"]
    filter_horizontal = ["features", "prices"]
    inlines = [PlanLimitInline]


@admin.register(Voucher)
class VoucherAdmin(TenantScopedAdmin):
    list_display = ["code", "type", "percentage", "duration", "max_redemptions", "disabled"]
    list_filter = ["type", "duration", "disabled", "tenant"]
    search_fields = ["code"]


@admin.register(VoucherRedemption)
class VoucherRedemptionAdmin(TenantScopedAdmin):
    list_display = ["voucher", "customer", "remaining_cycles", "active", "redeemed_at"]
    list_filter = ["active", "tenant"]
    search_fields = ["voucher__code", "customer__email"]
    list_select_related = ["voucher", "customer"]
    raw_id_fields = ["voucher", "customer"]


class SubscriptionItemInline(TenantInline):
    model = SubscriptionItem
    fields = ["item_type", "product", "price", "quantity", "active_from", "active_to"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Subscription)
class SubscriptionAdmin(TenantScopedAdmin):
    """Staff read subscriptions here and use the lifecycle actions; the billing fields are read
    only because changing them by hand would bypass proration and invoicing."""

    list_display = [
        "id",
        "customer",
        "plan",
        "status",
        "seat_number",
        "currency",
        "valid_until",
        "tenant",
    ]
    list_filter = ["status", "schedule", "currency", "tenant"]
    search_fields = ["id", "customer__email", "plan__code_name", "main_external_reference"]
    list_select_related = ["customer", "plan", "tenant"]
    readonly_fields = [
        "id",
        "tenant",
        "customer",
        "plan",
        "price",
        "seat_number",
        "schedule",
        "currency",
        "status",
        "anchor",
        "period_index",
        "current_period_start",
        "valid_until",
        "started_at",
        "trial_ends_at",
        "cancel_at",
        "ended_at",
        "payment_method",
        "pending_change",
        "created_at",
        "updated_at",
    ]
    fields = [*readonly_fields, "main_external_reference", "child_external_reference", "metadata"]
    inlines = [SubscriptionItemInline]
    actions = ["cancel_at_period_end", "cancel_now"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        fields = {
            name: getattr(obj, name)
            for name in form.changed_data
            if name in services.SUBSCRIPTION_EDITABLE_FIELDS
        }
        if fields:
            services.subscription_update(subscription=obj, **fields)

    def _cancel(self, request, queryset, when):
        done = 0
        for subscription in queryset.exclude(status=Subscription.Status.CANCELLED):
            services.subscription_cancel(subscription=subscription, when=when)
            done += 1
        self.message_user(request, f"Cancelled {done} subscription(s).", messages.SUCCESS)

    @admin.action(description="Cancel at the end of the current period")
    def cancel_at_period_end(self, request, queryset):
        self._cancel(request, queryset, "end-of-run")

    @admin.action(description="Cancel now (no refund)")
    def cancel_now(self, request, queryset):
        self._cancel(request, queryset, "instantly")


@admin.register(SubscriptionItem)
class SubscriptionItemAdmin(TenantScopedAdmin):
    list_display = ["subscription", "item_type", "product", "quantity", "active_from", "active_to"]
    list_filter = ["item_type", "tenant"]
    search_fields = ["subscription__id", "product__name", "description"]
    list_select_related = ["subscription", "product"]
    raw_id_fields = ["subscription", "product", "price", "metric"]
    readonly_fields = ["subscription", "item_type", "product", "price", "quantity", "unit_price"]
