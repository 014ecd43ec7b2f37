"""The seed-003 namespace API: quotas, effective limits and usage, usage reports, usage plans,
plan transitions, namespace payment methods, add-ons, invoices and subscriptions."""

import base64
import uuid

from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django_ratelimit.core import get_usage
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from customers.models import Namespace
from quotas import selectors, services
from quotas.api import serializers as s
from quotas.models import PlanTransition, Quota
from tenants.api.fields import decimal_text
from tenants.api.schema import error_responses
from tenants.api.views import TenantAPIView


class NamespaceAPIView(TenantAPIView):
    """An endpoint under /namespaces/{ns}: the namespace of the caller's tenant, else 404."""

    def namespace(self) -> Namespace:
        return get_object_or_404(
            Namespace.objects.for_tenant(self.tenant).select_related("customer", "tenant"),
            name=self.kwargs["ns"],
        )

    def validated(self, serializer_class, **context):
        serializer = serializer_class(
            data=self.request.data, context={"request": self.request, **context}
        )
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


# --- Quotas --------------------------------------------------------------------------------------


def _quota_fields(data: dict) -> dict:
    metadata = data["metadata"]
    return {
        "description": metadata.get("description", ""),
        "labels": metadata.get("labels") or {},
        "disable": metadata.get("disable", False),
        "spec": {
            "object_limits": dict(data["spec"].get("object_limits") or {}),
            "resource_limits": dict(data["spec"].get("resource_limits") or {}),
            "api_limits": dict(data["spec"].get("api_limits") or {}),
        },
    }


def _check_metadata_namespace(data: dict, namespace: Namespace) -> None:
    named = data["metadata"].get("namespace")
    if named and named != namespace.name:
        raise exceptions.ValidationError(
            {"metadata": {"namespace": ["metadata.namespace must be the namespace of the path"]}}
        )


class QuotaListView(NamespaceAPIView):
    @extend_schema(
        summary="List a namespace's quotas",
        operation_id="namespaces_quotas_list",
        responses={200: s.QuotaListSerializer, **error_responses(404)},
    )
    def get(self, request, ns):
        namespace = self.namespace()
        quotas = Quota.objects.for_tenant(self.tenant).filter(namespace=namespace).order_by("id")
        for quota in quotas:
            quota.namespace = namespace
        return Response(s.QuotaListSerializer({"items": quotas}).data)

    @extend_schema(
        summary="Create a quota",
        request=s.QuotaInputSerializer,
        responses={201: s.QuotaSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request, ns):
        namespace = self.namespace()
        data = self.validated(s.QuotaInputSerializer, tenant=self.tenant)
        _check_metadata_namespace(data, namespace)
        quota = services.quota_create(
            namespace=namespace, name=data["metadata"]["name"], **_quota_fields(data)
        )
        return Response(s.QuotaSerializer(quota).data, status=status.HTTP_201_CREATED)


class QuotaDetailView(NamespaceAPIView):
    def quota(self, namespace) -> Quota:
        quota = get_object_or_404(
            Quota.objects.for_tenant(self.tenant), namespace=namespace, name=self.kwargs["name"]
        )
        quota.namespace = namespace
        return quota

    @extend_schema(
        summary="Fetch a quota", responses={200: s.QuotaSerializer, **error_responses(404)}
    )
    def get(self, request, ns, name):
        return Response(s.QuotaSerializer(self.quota(self.namespace())).data)

    @extend_schema(
        summary="Replace a quota",
        description="With `resource_version`, only that version is replaced: 409 when the quota "
        "has changed since.",
        request=s.QuotaInputSerializer,
        responses={200: s.QuotaSerializer, **error_responses(400, 404, 409)},
    )
    def put(self, request, ns, name):
        namespace = self.namespace()
        quota = self.quota(namespace)
        data = self.validated(s.QuotaInputSerializer, tenant=self.tenant)
        _check_metadata_namespace(data, namespace)
        if data["metadata"]["name"] != quota.name:
            raise exceptions.ValidationError(
                {"metadata": {"name": ["metadata.name must be the quota name of the path"]}}
            )
        quota = services.quota_replace(
            quota=quota, resource_version=data.get("resource_version"), **_quota_fields(data)
        )
        quota.namespace = namespace
        return Response(s.QuotaSerializer(quota).data)

    @extend_schema(summary="Delete a quota", responses={204: None, **error_responses(404)})
    def delete(self, request, ns, name):
        services.quota_delete(quota=self.quota(self.namespace()))
        return Response(status=status.HTTP_204_NO_CONTENT)


class QuotaLimitsView(NamespaceAPIView):
    @extend_schema(
        summary="Effective limits of a namespace",
        description="The plan's defaults overlaid by the namespace's (enabled) quotas.",
        responses={200: s.QuotaLimitsSerializer, **error_responses(404)},
    )
    def get(self, request, ns):
        report = selectors.quota_report(self.namespace(), with_usage=False)
        return Response(s.QuotaLimitsSerializer(report).data)


class QuotaUsageView(NamespaceAPIView):
    @extend_schema(
        summary="Effective limits of a namespace with the current usage",
        responses={200: s.QuotaUsageSerializer, **error_responses(404)},
    )
    def get(self, request, ns):
        report = selectors.quota_report(self.namespace(), with_usage=True)
        return Response(s.QuotaUsageSerializer(report).data)


# --- Usage reports -------------------------------------------------------------------------------


def _window(namespace, data) -> tuple:
    start, end = selectors.default_window(namespace)
    return data.get("from", start), data.get("to", end)


class CurrentUsageView(NamespaceAPIView):
    @extend_schema(
        summary="Current usage and cost of a namespace",
        request=s.WindowSerializer,
        responses={200: s.CurrentUsageSerializer, **error_responses(400, 404)},
    )
    def post(self, request, ns):
        namespace = self.namespace()
        start, end = _window(namespace, self.validated(s.WindowSerializer))
        return Response(
            s.CurrentUsageSerializer(selectors.current_usage(namespace, start, end)).data
        )


class UsageDetailsView(NamespaceAPIView):
    @extend_schema(
        summary="Usage details of a namespace",
        request=s.WindowSerializer,
        responses={200: s.UsageDetailsSerializer, **error_responses(400, 404)},
    )
    def post(self, request, ns):
        namespace = self.namespace()
        start, end = _window(namespace, self.validated(s.WindowSerializer))
        items = selectors.usage_details(namespace, start, end)
        return Response(s.UsageDetailsSerializer({"items": items}).data)


class HourlyUsageDetailsView(NamespaceAPIView):
    @extend_schema(
        summary="Hourly breakdown of a usage detail",
        description="`query` is a detail's `hourly_breakdown_query`; the hourly quantities add "
        "up exactly to the detail's.",
        request=s.HourlyQuerySerializer,
        responses={200: s.HourlyUsageSerializer, **error_responses(400, 404)},
    )
    def post(self, request, ns):
        namespace = self.namespace()
        data = self.validated(s.HourlyQuerySerializer)
        items = selectors.hourly_usage_details(namespace, data["query"])
        if items is None:
            raise exceptions.ValidationError(
                {"query": ["query is not an hourly_breakdown_query of this namespace"]}
            )
        return Response(s.HourlyUsageSerializer({"items": items}).data)


class MonthlyUsageView(NamespaceAPIView):
    @extend_schema(
        summary="Monthly usage of a namespace (the last 12 calendar months, UTC)",
        request=None,
        responses={200: s.MonthlyUsageSerializer, **error_responses(404)},
    )
    def post(self, request, ns):
        namespace = self.namespace()
        items = [
            {
                "usage_type": row["metric"].code,
                "quantity": decimal_text(row["quantity"]),
                "unit_name": row["metric"].unit_name,
                "start_timestamp": row["start"],
                "end_timestamp": row["end"],
            }
            for row in selectors.monthly_usage(namespace)
        ]
        return Response(s.MonthlyUsageSerializer({"items": items}).data)


class UsageSummaryView(NamespaceAPIView):
    @extend_schema(
        summary="Tenant-wide usage per namespace and metric",
        request=s.UsageSummaryRequestSerializer,
        responses={200: s.UsageSummarySerializer, **error_responses(400)},
    )
    def post(self, request):
        data = self.validated(s.UsageSummaryRequestSerializer)
        start, end = data["start_time"], data["end_time"]
        items = [
            {
                "namespace": row["namespace"],
                "customer": row["customer"],
                "usage_type": row["metric"].code,
                "quantity": decimal_text(row["quantity"]),
                "unit_name": row["metric"].unit_name,
            }
            for row in selectors.tenant_usage_summary(self.tenant, start, end)
        ]
        return Response(
            s.UsageSummarySerializer({"start_time": start, "end_time": end, "items": items}).data
        )


# --- Usage plans ---------------------------------------------------------------------------------


def _plans_data(plans: list) -> list[dict]:
    quotas = selectors.plan_default_quotas(plans)
    return [
        {
            "id": plan.pk,
            "name": plan.name,
            "code_name": plan.code_name,
            "is_addon": plan.is_addon,
            "free": plan.free,
            "has_trial": plan.has_trial,
            "requires_manual_approval": plan.requires_manual_approval,
            "prices": sorted(plan.prices.all(), key=lambda price: price.pk),
            "default_quotas": quotas[plan.pk],
        }
        for plan in plans
    ]


class UsagePlansView(NamespaceAPIView):
    @extend_schema(
        summary="Public plans with their prices and default quotas",
        responses={200: s.UsagePlanListSerializer},
    )
    def get(self, request):
        plans = list(selectors.usage_plans(self.tenant))
        return Response(s.UsagePlanListSerializer({"items": _plans_data(plans)}).data)


class CurrentUsagePlanView(NamespaceAPIView):
    @extend_schema(
        summary="The plan of the namespace's customer",
        responses={200: s.UsagePlanSerializer, **error_responses(404)},
    )
    def get(self, request, ns):
        subscription = selectors.namespace_subscription(self.namespace())
        if subscription is None:
            raise Http404("The namespace's customer has no current plan.")
        return Response(s.UsagePlanSerializer(_plans_data([subscription.plan])[0]).data)


# --- Plan transitions ----------------------------------------------------------------------------


class PlanTransitionCreateView(NamespaceAPIView):
    @extend_schema(
        summary="Start a plan transition",
        description="Answers at once; a worker moves the subscription to the new plan "
        "(prorated) and applies the add-on changes. A plan that requires manual approval waits "
        "in STATE_WAITING_FOR_APPROVAL until staff approve it.",
        request=s.PlanTransitionRequestSerializer,
        responses={202: s.PlanTransitionCreatedSerializer, **error_responses(400, 404)},
    )
    def post(self, request, ns):
        namespace = self.namespace()
        data = self.validated(s.PlanTransitionRequestSerializer)
        plan = services.plan_get(tenant=self.tenant, reference=data["new_plan"])
        if plan is None:
            raise exceptions.ValidationError({"new_plan": ["new_plan was not found"]})
        payload = {k: v for k, v in data.get("payload", {}).items() if v not in ("", None)}
        transition = services.plan_transition_create(
            namespace=namespace, new_plan=plan, payload=payload
        )
        return Response(
            s.PlanTransitionCreatedSerializer(transition).data, status=status.HTTP_202_ACCEPTED
        )


class PlanTransitionDetailView(TenantAPIView):
    @extend_schema(
        summary="Fetch a plan transition",
        responses={200: s.PlanTransitionSerializer, **error_responses(404)},
    )
    def get(self, request, transition_id):
        transition = get_object_or_404(
            PlanTransition.objects.for_tenant(self.tenant).select_related(
                "namespace", "from_plan", "to_plan"
            ),
            pk=transition_id,
        )
        return Response(s.PlanTransitionSerializer(transition).data)


def _client_ip(group, request) -> str:
    return request.META.get("REMOTE_ADDR", "")


class PerIpThrottle(BaseThrottle):
    """The unauthenticated endpoint's limit, per client address (django-ratelimit's counters)."""

    rate = "120/m"

    def __init__(self):
        self._wait = None

    def allow_request(self, request, view) -> bool:
        usage = get_usage(
            request, group="api:no_auth", key=_client_ip, rate=self.rate, increment=True
        )
        if usage is None or not usage["should_limit"]:
            return True
        self._wait = max(usage["time_left"], 0) + 1
        return False

    def wait(self):
        return self._wait


class NoAuthPlanTransitionView(APIView):
    """The state of a plan transition, without a key: its id is the secret, and nothing but the
    state is revealed."""

    authentication_classes = []
    permission_classes = []
    throttle_classes = [PerIpThrottle]

    @extend_schema(
        summary="The state of a plan transition (no API key)",
        auth=[],
        parameters=[OpenApiParameter("id", str, required=True)],
        responses={200: s.PlanTransitionStateSerializer, **error_responses(404, 429)},
    )
    def get(self, request):
        try:
            transition_id = uuid.UUID(request.query_params.get("id", ""))
        except ValueError:
            raise Http404("No such plan transition.") from None
        state = (
            PlanTransition.objects.filter(pk=transition_id).values_list("state", flat=True).first()
        )
        if state is None:
            raise Http404("No such plan transition.")
        return Response({"state": state})


# --- Namespace payment methods -------------------------------------------------------------------


class NamespacePaymentMethodsView(NamespaceAPIView):
    @extend_schema(
        summary="Add a payment method to a namespace",
        request=s.NamespacePaymentMethodRequestSerializer,
        responses={201: s.PaymentMethodNameSerializer, **error_responses(400, 404)},
    )
    def post(self, request, ns):
        namespace = self.namespace()
        data = self.validated(s.NamespacePaymentMethodRequestSerializer)
        method = services.namespace_payment_method_create(
            namespace=namespace, role=data["role"], token=data["token"], contact=data.get("contact")
        )
        return Response({"name": method.name}, status=status.HTTP_201_CREATED)


class NamespacePaymentMethodView(NamespaceAPIView):
    def method(self):
        try:
            return services.namespace_payment_method_get(
                namespace=self.namespace(), name=self.kwargs["name"]
            )
        except ObjectDoesNotExist:
            raise Http404("No such payment method.") from None


class NamespacePaymentMethodDeleteView(NamespacePaymentMethodView):
    @extend_schema(
        summary="Delete a namespace's payment method",
        description="When it was the primary one, the secondary becomes primary.",
        responses={204: None, **error_responses(404)},
    )
    def delete(self, request, ns, name):
        services.namespace_payment_method_delete(method=self.method())
        return Response(status=status.HTTP_204_NO_CONTENT)


def _role_view(service, summary: str, description: str):
    class RoleView(NamespacePaymentMethodView):
        @extend_schema(
            summary=summary,
            description=description,
            request=None,
            responses={200: s.PaymentMethodRoleSerializer, **error_responses(404, 409)},
        )
        def post(self, request, ns, name):
            method = service(method=self.method())
            return Response({"name": method.name, "role": method.role})

    RoleView.__name__ = RoleView.__qualname__ = f"{service.__name__.title().replace('_', '')}View"
    return RoleView


MakePrimaryView = _role_view(
    services.namespace_payment_method_make_primary,
    "Make a payment method primary",
    "The former primary becomes NORMAL; the primary is also the customer's default card.",
)
MakeSecondaryView = _role_view(
    services.namespace_payment_method_make_secondary,
    "Make a payment method secondary",
    "The former secondary becomes NORMAL; the primary cannot be made secondary (409).",
)
SwapPrimaryView = _role_view(
    services.namespace_payment_method_swap_primary,
    "Swap the secondary payment method with the primary",
    "The secondary becomes primary and the primary secondary; 409 unless it is the secondary.",
)


# --- Add-ons -------------------------------------------------------------------------------------


_ADDON_SCHEMA = {
    "request": s.AddonRequestSerializer,
    "responses": {200: s.AddonAnswerSerializer, **error_responses(400, 404, 409)},
}


class AddonView(NamespaceAPIView):
    def addon_change(self, service, *, subscribed: bool) -> Response:
        namespace = self.namespace()
        data = self.validated(s.AddonRequestSerializer)
        addon = services.addon_plan_get(tenant=self.tenant, code_name=data["addon"])
        subscription = service(namespace=namespace, addon=addon)
        return Response(
            {"addon": addon.code_name, "subscribed": subscribed, "subscription": subscription.pk}
        )


class AddonSubscribeView(AddonView):
    @extend_schema(summary="Subscribe to an add-on", **_ADDON_SCHEMA)
    def post(self, request, ns):
        return self.addon_change(services.addon_subscribe, subscribed=True)


class AddonUnsubscribeView(AddonView):
    @extend_schema(summary="Unsubscribe from an add-on", **_ADDON_SCHEMA)
    def post(self, request, ns):
        return self.addon_change(services.addon_unsubscribe, subscribed=False)


# --- Invoices and subscriptions ------------------------------------------------------------------


class NamespaceInvoicesView(NamespaceAPIView):
    @extend_schema(
        summary="The invoices of the namespace's customer",
        responses={200: s.NamespaceInvoiceListSerializer, **error_responses(404)},
    )
    def get(self, request, ns):
        now = timezone.now()
        invoices = [
            {
                "name": invoice.number,
                "period_start": invoice.period_start,
                "period_end": invoice.period_end,
                "amount": invoice.total,
                "currency": invoice.currency,
                "status": invoice.status,
                "active": bool(
                    invoice.period_start
                    and invoice.period_end
                    and invoice.period_start <= now < invoice.period_end
                ),
            }
            for invoice in selectors.namespace_invoices(self.namespace())
        ]
        return Response(s.NamespaceInvoiceListSerializer({"invoices": invoices}).data)


class NamespaceInvoicePdfView(NamespaceAPIView):
    @extend_schema(
        summary="An invoice of the namespace's customer as a base64 PDF",
        parameters=[OpenApiParameter("name", str, required=True, description="Invoice number")],
        responses={200: s.InvoicePdfSerializer, **error_responses(400, 404)},
    )
    def get(self, request, ns):
        from invoicing.pdf import invoice_pdf

        name = request.query_params.get("name")
        if not name:
            raise exceptions.ValidationError({"name": ["name should not be empty"]})
        invoice = (
            selectors.namespace_invoices(self.namespace())
            .filter(number=name)
            .select_related("customer", "tenant")
            .first()
        )
        if invoice is None:
            raise Http404("No such invoice.")
        pdf = invoice_pdf(invoice)
        return Response({"pdf": base64.b64encode(pdf).decode()})


class NamespaceSubscriptionsView(NamespaceAPIView):
    @extend_schema(
        summary="The subscriptions of the namespace's customer, with their billed periods",
        responses={200: s.NamespaceSubscriptionListSerializer, **error_responses(404)},
    )
    def get(self, request, ns):
        rows = selectors.namespace_subscriptions(self.namespace())
        return Response(s.NamespaceSubscriptionListSerializer({"subscriptions": rows}).data)
