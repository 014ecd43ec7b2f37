import json

import django_filters
from django.db.models import Q
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.response import Response

from customers.models import Customer, UsageLimit
from subscriptions import services as subscription_services
from subscriptions.models import Metric, Subscription
from tenants.api.fields import decimal_text
from tenants.api.schema import error_responses
from tenants.api.views import TenantAPIView, TenantScopedViewSet
from usage import selectors, services
from usage.api.serializers import (
    CostEstimateSerializer,
    EventBatchInputSerializer,
    EventBatchResultSerializer,
    EventInputSerializer,
    EventSerializer,
    MetricSerializer,
    UsageDeleteQuerySerializer,
    UsageInputSerializer,
    UsageLimitSerializer,
    UsagePageSerializer,
    UsageQuerySerializer,
    UsageSerializer,
    UsageUpdateSerializer,
    event_data,
)
from usage.models import UsageEvent

# --- Metrics ------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List billable metrics", responses={200: MetricSerializer(many=True)}
    ),
    create=extend_schema(
        summary="Create a billable metric",
        responses={201: MetricSerializer, **error_responses(400)},
    ),
    retrieve=extend_schema(
        summary="Fetch a billable metric", responses={200: MetricSerializer, **error_responses(404)}
    ),
    update=extend_schema(
        summary="Replace a billable metric",
        responses={200: MetricSerializer, **error_responses(400, 404)},
    ),
    partial_update=extend_schema(
        summary="Update a billable metric",
        responses={200: MetricSerializer, **error_responses(400, 404)},
    ),
)
class MetricViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = MetricSerializer
    lookup_value_regex = "[^/]+"

    def get_tenant_queryset(self, tenant):
        return Metric.objects.for_tenant(tenant)

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        metric = subscription_services.metric_create(
            tenant=self.tenant, **serializer.validated_data
        )
        return Response(self.get_serializer(metric).data, status=status.HTTP_201_CREATED)

    def update(self, request, pk=None, partial=False):
        metric = self.get_object()
        serializer = self.get_serializer(metric, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        if fields.get("code", metric.code) != metric.code and (
            UsageEvent.objects.for_tenant(self.tenant).filter(code=metric.code).exists()
        ):
            raise ValidationError({"code": ["code cannot change once the metric has usage"]})
        reading = (metric.filters, metric.aggregation_property)
        metric = subscription_services.metric_update(metric=metric, **fields)
        if (metric.filters, metric.aggregation_property) != reading:
            services.metric_rollups_refresh(metric=metric)
        return Response(self.get_serializer(metric).data)

    def partial_update(self, request, pk=None):
        return self.update(request, pk=pk, partial=True)


# --- Events -------------------------------------------------------------------------------------


class EventFilter(django_filters.FilterSet):
    customer = django_filters.UUIDFilter(field_name="customer_id")
    subscription = django_filters.UUIDFilter(field_name="subscription_id")
    code = django_filters.CharFilter()
    namespace = django_filters.CharFilter(field_name="namespace__name")
    to = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="lt")

    class Meta:
        model = UsageEvent
        fields = ["customer", "subscription", "code", "namespace", "to"]

    def __init__(self, data=None, *args, **kwargs):
        super().__init__(data, *args, **kwargs)
        # `from` is a Python keyword, so it is declared here rather than as a class attribute.
        self.filters["from"] = django_filters.IsoDateTimeFilter(
            field_name="timestamp", lookup_expr="gte"
        )


def _json_body(request):
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ParseError("Malformed JSON.") from None


def ingest_one(tenant, request) -> tuple[int, dict]:
    """POST /events, for the DRF view and its hot path (tenants.api.hot.hot_post): 201 with the
    stored event, or 200 with the original when `event_id` was seen before."""
    body = _json_body(request)
    if not isinstance(body, dict):
        raise ValidationError({"non_field_errors": ["the body must be an event object"]})
    result = services.events_ingest(tenant=tenant, events=[body], batch=False)
    if result.inserted:
        row = result.inserted[0]
        return status.HTTP_201_CREATED, event_data(row, row.namespace_name)
    return status.HTTP_200_OK, _stored_event(tenant, body["event_id"])


def _stored_event(tenant, event_id: str) -> dict:
    stored = (
        UsageEvent.objects.for_tenant(tenant).select_related("namespace").get(event_id=event_id)
    )
    return EventSerializer(stored).data


@extend_schema_view(
    list=extend_schema(
        summary="List usage events",
        parameters=[
            OpenApiParameter("from", str, description="Events at or after (RFC 3339)."),
            OpenApiParameter("to", str, description="Events before (RFC 3339)."),
        ],
        responses={200: EventSerializer(many=True), **error_responses(400)},
    ),
)
class EventViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """Ingestion reads the raw body and validates it by hand (usage.services.events_ingest):
    at 1,000 events a request, DRF's parser and per-event serializers would cost more than the
    database does. Errors still go through the one error handler."""

    serializer_class = EventSerializer
    filterset_class = EventFilter

    @property
    def rate_limit_scope(self) -> str:
        return "ingest" if self.action in ("create", "batch") else "default"

    def get_tenant_queryset(self, tenant):
        return UsageEvent.objects.for_tenant(tenant).select_related("namespace")

    @extend_schema(
        summary="Ingest one usage event",
        request=EventInputSerializer,
        responses={
            201: EventSerializer,
            200: EventSerializer,
            **error_responses(400, 429),
        },
    )
    def create(self, request):
        status_code, data = ingest_one(self.tenant, request)
        return Response(data, status=status_code)

    @extend_schema(
        summary="Ingest up to 1,000 usage events (all or nothing)",
        request=EventBatchInputSerializer,
        responses={200: EventBatchResultSerializer, **error_responses(400, 429)},
    )
    @action(detail=False, methods=["post"])
    def batch(self, request):
        body = _json_body(request)
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            raise ValidationError({"events": ["events should not be empty"]})
        if len(events) > services.BATCH_MAX_EVENTS:
            raise ValidationError({"events": ["events must contain at most 1000 events"]})
        result = services.events_ingest(tenant=self.tenant, events=events, batch=True)
        return Response({"accepted": result.accepted, "duplicates": result.duplicates})


# --- Seed-004 usages ---------------------------------------------------------------------------


def _subscription(tenant, subscription_id) -> Subscription:
    return get_object_or_404(
        Subscription.objects.for_tenant(tenant).select_related("customer"), pk=subscription_id
    )


class SubscriptionUsagesView(TenantAPIView):
    @extend_schema(
        summary="Filter usages of a subscription (page-numbered, on usage_end)",
        parameters=[UsageQuerySerializer],
        responses={200: UsagePageSerializer, **error_responses(400, 404)},
    )
    def get(self, request, subscription_id):
        subscription = _subscription(self.tenant, subscription_id)
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        usages = UsageEvent.objects.for_tenant(self.tenant).filter(
            subscription=subscription,
            usage_reference__isnull=False,
            usage_end__gte=params["interval_start"],
            usage_end__lte=params["interval_end"],
        )
        if params.get("option_code"):
            usages = usages.filter(code=params["option_code"])
        if params.get("renewal_order_reference"):
            usages = usages.filter(renewal_order_reference=params["renewal_order_reference"])
        total = usages.count()
        page, limit = params["page"], params["limit"]
        items = usages.order_by("usage_reference")[(page - 1) * limit : page * limit]
        return Response(
            {
                "data": UsageSerializer(items, many=True).data,
                "page": page,
                "limit": limit,
                "total": total,
            }
        )

    @extend_schema(
        summary="Save usages for a subscription",
        request=UsageInputSerializer(many=True),
        responses={201: UsageSerializer(many=True), **error_responses(400, 404)},
    )
    def post(self, request, subscription_id):
        subscription = _subscription(self.tenant, subscription_id)
        if not isinstance(request.data, list) or not request.data:
            raise ValidationError({"non_field_errors": ["the body must be a non-empty array"]})
        if len(request.data) > services.BATCH_MAX_EVENTS:
            raise ValidationError({"non_field_errors": ["at most 1000 usages at once"]})
        serializer = UsageInputSerializer(data=request.data, many=True)
        serializer.is_valid(raise_exception=True)
        usages = services.usages_create(subscription=subscription, usages=serializer.validated_data)
        return Response(UsageSerializer(usages, many=True).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Delete usages matching the criteria (billed usage: 409)",
        parameters=[UsageDeleteQuerySerializer],
        responses={204: None, **error_responses(400, 404, 409)},
    )
    def delete(self, request, subscription_id):
        subscription = _subscription(self.tenant, subscription_id)
        query = UsageDeleteQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        criteria = query.validated_data
        condition = Q(subscription=subscription, usage_reference__isnull=False)
        if "usage_reference" in criteria:
            condition &= Q(usage_reference=criteria["usage_reference"])
        if "option_code" in criteria:
            condition &= Q(code=criteria["option_code"])
        if "interval_start" in criteria:
            condition &= Q(
                usage_end__gte=criteria["interval_start"], usage_end__lte=criteria["interval_end"]
            )
        services.usages_delete(
            subscription=subscription,
            queryset=UsageEvent.objects.for_tenant(self.tenant).filter(condition),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class SubscriptionUsageView(TenantAPIView):
    @extend_schema(
        summary="Update a usage (billed usage: 409)",
        request=UsageUpdateSerializer,
        responses={200: UsageSerializer, **error_responses(400, 404, 409)},
    )
    def put(self, request, subscription_id, usage_reference):
        subscription = _subscription(self.tenant, subscription_id)
        usage = get_object_or_404(
            UsageEvent.objects.for_tenant(self.tenant),
            subscription=subscription,
            usage_reference=usage_reference,
        )
        serializer = UsageUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        usage = services.usage_update(usage=usage, **serializer.validated_data)
        return Response(UsageSerializer(usage).data)


# --- Customers: cost estimate and usage limits ---------------------------------------------------


def _customer(tenant, customer_id) -> Customer:
    return get_object_or_404(
        Customer.objects.for_tenant(tenant).select_related("tenant"), pk=customer_id
    )


class CustomerCostsView(TenantAPIView):
    @extend_schema(
        summary="Usage cost estimate of the current period (before tax)",
        responses={200: CostEstimateSerializer, **error_responses(404)},
    )
    def get(self, request, customer_id):
        estimate = selectors.customer_cost_estimate(customer=_customer(self.tenant, customer_id))
        currency = estimate.currency
        return Response(
            {
                "costs": [
                    {
                        "metric": {
                            "id": str(cost.metric.id),
                            "name": cost.metric.name,
                            "code": cost.metric.code,
                        },
                        "usage": decimal_text(cost.usage),
                        "cost": {"amount": cost.amount, "currency": currency},
                    }
                    for cost in estimate.costs
                ],
                "cost": {"amount": estimate.total, "currency": currency},
            }
        )


@extend_schema_view(
    list=extend_schema(
        summary="List a customer's usage limits",
        responses={200: UsageLimitSerializer(many=True), **error_responses(404)},
    ),
    create=extend_schema(
        summary="Create a usage limit",
        responses={201: UsageLimitSerializer, **error_responses(400, 404)},
    ),
    destroy=extend_schema(
        summary="Delete a usage limit", responses={204: None, **error_responses(404)}
    ),
)
class CustomerUsageLimitViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    serializer_class = UsageLimitSerializer
    lookup_url_kwarg = "limit_id"

    def get_tenant_queryset(self, tenant):
        return UsageLimit.objects.for_tenant(tenant).filter(customer_id=self.kwargs["customer_id"])

    def list(self, request, customer_id=None):
        _customer(self.tenant, customer_id)
        return super().list(request)

    def create(self, request, customer_id=None):
        customer = _customer(self.tenant, customer_id)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        limit = services.usage_limit_create(customer=customer, **serializer.validated_data)
        return Response(self.get_serializer(limit).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, customer_id=None, limit_id=None):
        services.usage_limit_delete(usage_limit=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
