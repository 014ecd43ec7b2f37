"""The admin's tenancy rule: staff see and change only the rows of tenants they are members of;
superusers see everything. Every tenant-owned ModelAdmin derives from `TenantScopedAdmin`."""

from django.contrib import admin

from tenants.selectors import tenants_for_user


class TenantScopedAdmin(admin.ModelAdmin):
    tenant_field = "tenant"

    def _member_tenants(self, request):
        if not hasattr(request, "_member_tenants"):
            request._member_tenants = list(tenants_for_user(request.user))
        return request._member_tenants

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.tenant_field}__in": self._member_tenants(request)})

    def _is_member_staff(self, request) -> bool:
        user = request.user
        return user.is_active and (
            user.is_superuser or (user.is_staff and bool(self._member_tenants(request)))
        )

    def has_module_permission(self, request):
        return self._is_member_staff(request)

    def has_view_permission(self, request, obj=None):
        return self._is_member_staff(request)

    def has_change_permission(self, request, obj=None):
        return self._is_member_staff(request)

    def has_add_permission(self, request):
        return self._is_member_staff(request)

    def has_delete_permission(self, request, obj=None):
        return self._is_member_staff(request)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if request.user.is_superuser or field is None:
            return field
        model = db_field.related_model
        if model._meta.label == "tenants.Tenant":
            field.queryset = field.queryset.filter(
                pk__in=[t.pk for t in self._member_tenants(request)]
            )
        elif any(f.name == "tenant" for f in model._meta.get_fields()):
            field.queryset = field.queryset.filter(tenant__in=self._member_tenants(request))
        return field
