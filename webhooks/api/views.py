import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.response import Response

from tenants.api.schema import error_responses
from tenants.api.views import TenantScopedViewSet
from webhooks import services
from webhooks.api.serializers import (
    WebhookDeliverySerializer,
    WebhookEndpointCreatedSerializer,
    WebhookEndpointSerializer,
)
from webhooks.models import WebhookDelivery, WebhookEndpoint


@extend_schema_view(
    list=extend_schema(
        summary="List webhook endpoints",
        responses={200: WebhookEndpointSerializer(many=True), **error_responses(400, 403)},
    ),
    create=extend_schema(
        summary="Create a webhook endpoint (the signing secret is returned once)",
        responses={201: WebhookEndpointCreatedSerializer, **error_responses(400, 403)},
    ),
    retrieve=extend_schema(
        summary="Fetch a webhook endpoint",
        responses={200: WebhookEndpointSerializer, **error_responses(403, 404)},
    ),
    partial_update=extend_schema(
        summary="Update a webhook endpoint",
        responses={200: WebhookEndpointSerializer, **error_responses(400, 403, 404)},
    ),
    destroy=extend_schema(
        summary="Delete a webhook endpoint", responses={204: None, **error_responses(403, 404)}
    ),
)
class WebhookEndpointViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TenantScopedViewSet
):
    serializer_class = WebhookEndpointSerializer

    def get_tenant_queryset(self, tenant):
        return WebhookEndpoint.objects.for_tenant(tenant)

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = services.endpoint_create(tenant=self.tenant, **serializer.validated_data)
        return Response(
            WebhookEndpointCreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED
        )

    def partial_update(self, request, pk=None):
        endpoint = self.get_object()
        serializer = self.get_serializer(endpoint, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        endpoint = services.endpoint_update(endpoint=endpoint, **serializer.validated_data)
        return Response(self.get_serializer(endpoint).data)


class WebhookDeliveryFilter(django_filters.FilterSet):
    endpoint = django_filters.UUIDFilter(field_name="endpoint_id")
    event_type = django_filters.ChoiceFilter(choices=[(t, t) for t in sorted(services.EVENT_TYPES)])
    status = django_filters.ChoiceFilter(choices=WebhookDelivery.Status.choices)

    class Meta:
        model = WebhookDelivery
        fields = ["endpoint", "event_type", "status"]


@extend_schema_view(
    list=extend_schema(
        summary="List webhook deliveries",
        responses={200: WebhookDeliverySerializer(many=True), **error_responses(400, 403)},
    ),
)
class WebhookDeliveryViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    serializer_class = WebhookDeliverySerializer
    filterset_class = WebhookDeliveryFilter

    def get_tenant_queryset(self, tenant):
        return WebhookDelivery.objects.for_tenant(tenant)
