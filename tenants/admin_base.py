"""The admin's tenancy rule: staff see and change only the rows of tenants they are members of;
superusers see everything. Every tenant-owned ModelAdmin derives from `TenantScopedAdmin`."""

from django.contrib import admin

from tenants.selectors import tenants_for_user


def _member_tenants(request):
    if not hasattr(request, "_member_tenants"):
        request._member_tenants = list(tenants_for_user(request.user))
    return request._member_tenants


def _is_member_staff(request) -> bool:
    user = request.user
    return user.is_active and (
        user.is_superuser or (user.is_staff and bool(_member_tenants(request)))
    )


class TenantScopedAdmin(admin.ModelAdmin):
    tenant_field = "tenant"

    def _member_tenants(self, request):
        return _member_tenants(request)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.tenant_field}__in": self._member_tenants(request)})

    def get_list_filter(self, request):
        # The stock filter on a foreign key offers every tenant's name; offer only those in the
        # rows this user may see.
        return [
            (name, admin.RelatedOnlyFieldListFilter) if name == self.tenant_field else name
            for name in super().get_list_filter(request)
        ]

    def _is_member_staff(self, request) -> bool:
        return _is_member_staff(request)

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


class TenantScopedInlineMixin:
    """For inlines on a `TenantScopedAdmin` page: the parent's rule (members of the tenant may view
    and change), not Django's per-model permissions, which tenant staff are not given.
    Subclasses may still narrow it (e.g. `has_add_permission` returning False)."""

    def has_view_permission(self, request, obj=None):
        return _is_member_staff(request)

    def has_change_permission(self, request, obj=None):
        return _is_member_staff(request)

    def has_add_permission(self, request, obj=None):
        return _is_member_staff(request)

    def has_delete_permission(self, request, obj=None):
        return _is_member_staff(request)
