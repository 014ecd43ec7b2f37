"""The base classes every API view builds on: the caller's tenant, `Idempotency-Key` handling,
and fail-closed tenant scoping (a view cannot serve a queryset not scoped to the tenant)."""

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from rest_framework import exceptions, viewsets
from rest_framework.views import APIView

from tenants.api.errors import Conflict
from tenants.models import Tenant
from tenants.services import (
    IdempotencyConflict,
    idempotency_begin,
    idempotency_complete,
    request_fingerprint,
)

IDEMPOTENCY_HEADER = "HTTP_IDEMPOTENCY_KEY"
IDEMPOTENT_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class _IdempotentReplay(Exception):
    def __init__(self, record):
        self.record = record


class ApiConventionsMixin:
    """Mixed into every API view, before the DRF base class."""

    _idempotency_record = None

    @property
    def tenant(self) -> Tenant:
        return self.request.auth.tenant

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        key = request.META.get(IDEMPOTENCY_HEADER)
        if key is None or request.method not in IDEMPOTENT_METHODS:
            return
        if not 1 <= len(key) <= 255:
            raise exceptions.ValidationError(
                {"Idempotency-Key": ["Idempotency-Key must be 1 to 255 characters long"]}
            )
        fingerprint = request_fingerprint(
            method=request.method, path=request.get_full_path(), body=request.body
        )
        try:
            record, replay = idempotency_begin(tenant=self.tenant, key=key, fingerprint=fingerprint)
        except IdempotencyConflict as conflict:
            raise Conflict(conflict.reason) from None
        if replay is not None:
            raise _IdempotentReplay(replay)
        self._idempotency_record = record

    def handle_exception(self, exc):
        if isinstance(exc, _IdempotentReplay):
            record = exc.record
            response = HttpResponse(
                record.response_body,
                status=record.status_code,
                content_type=record.content_type or None,
            )
            response["Idempotent-Replayed"] = "true"
            return response
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        record, self._idempotency_record = self._idempotency_record, None
        if record is not None:
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            idempotency_complete(
                record=record,
                status_code=response.status_code,
                body=response.content.decode(),
                content_type=response.get("Content-Type", ""),
            )
        return response


class TenantAPIView(ApiConventionsMixin, APIView):
    """A plain API view for the caller's tenant."""


class TenantScopedViewSet(ApiConventionsMixin, viewsets.GenericViewSet):
    """Subclasses implement `get_tenant_queryset(tenant)`, which must return a queryset scoped with
    `.for_tenant(tenant)`; anything else is refused, so a forgotten filter cannot leak rows."""

    def get_tenant_queryset(self, tenant):
        raise NotImplementedError

    def filter_queryset(self, queryset):
        # Filters narrow lists; building a FilterSet (and its form) for one object's own URL costs
        # a fifth of a detail request and can never change its answer.
        if self.action in ("retrieve", "update", "partial_update", "destroy"):
            return queryset
        return super().filter_queryset(queryset)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            # Schema generation has no request and no tenant: an empty queryset of the model
            # (the view's `model`, else the serializer's) is all it needs to type the path.
            model = getattr(self, "model", None) or self.get_serializer_class().Meta.model
            return model.objects.none()
        queryset = self.get_tenant_queryset(self.tenant)
        if not getattr(queryset, "is_tenant_scoped", False):
            raise ImproperlyConfigured(
                f"{type(self).__name__}.get_tenant_queryset must return a queryset scoped with "
                ".for_tenant(tenant)."
            )
        return queryset
