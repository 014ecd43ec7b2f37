import django_filters
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from customers.models import Customer
from invoicing import pdf, services, xrechnung
from invoicing.api.serializers import (
    ChargeFailedSerializer,
    ChargeResultSerializer,
    CollectionCompleteSerializer,
    CollectionTokenSerializer,
    InvoiceSerializer,
    PaymentMethodSerializer,
    PaymentSerializer,
    RefundCreateSerializer,
    RefundSerializer,
)
from invoicing.models import Invoice, Payment, PaymentMethod, Receipt, Refund
from tenants.api.errors import PaymentRequired
from tenants.api.schema import error_responses
from tenants.api.views import TenantScopedViewSet

_PDF = OpenApiResponse(OpenApiTypes.BINARY, description="application/pdf")


class DownloadNegotiationMixin:
    """Downloads answer a file whatever the Accept header says, and `?format=` selects the
    document's format rather than DRF's renderer."""

    download_actions = ("download",)

    def perform_content_negotiation(self, request, force=False):
        if getattr(self, "action", None) in self.download_actions:
            return JSONRenderer(), JSONRenderer.media_type
        return super().perform_content_negotiation(request, force)


def _file_response(content: bytes, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


class InvoiceFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Invoice.Status.choices)
    customer = django_filters.UUIDFilter(field_name="customer_id")
    subscription = django_filters.UUIDFilter(field_name="subscription_id")
    # An RFC 3339 window on the invoice's creation: from inclusive, to exclusive.
    created_from = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_to = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Invoice
        fields = ["status", "customer", "subscription"]

    def __init__(self, data=None, *args, **kwargs):
        if data is not None:
            data = data.copy()
            for public, internal in (("from", "created_from"), ("to", "created_to")):
                if public in data:
                    data[internal] = data[public]
        super().__init__(data, *args, **kwargs)


def _invoice_queryset(tenant):
    return Invoice.objects.for_tenant(tenant).prefetch_related("lines")


_INVOICE_FILTER_PARAMS = [
    OpenApiParameter("from", OpenApiTypes.DATETIME, description="created at or after"),
    OpenApiParameter("to", OpenApiTypes.DATETIME, description="created before"),
]


@extend_schema_view(
    list=extend_schema(
        summary="List invoices",
        parameters=_INVOICE_FILTER_PARAMS,
        responses={200: InvoiceSerializer(many=True), **error_responses(400, 403)},
    ),
    retrieve=extend_schema(
        summary="Fetch an invoice", responses={200: InvoiceSerializer, **error_responses(403, 404)}
    ),
)
class InvoiceViewSet(
    DownloadNegotiationMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet
):
    serializer_class = InvoiceSerializer
    filterset_class = InvoiceFilter

    def get_tenant_queryset(self, tenant):
        return _invoice_queryset(tenant)

    @extend_schema(
        summary="Download an invoice (PDF, or XRechnung XML with ?format=xrechnung)",
        parameters=[OpenApiParameter("format", str, enum=["pdf", "xrechnung"])],
        responses={200: _PDF, **error_responses(400, 403, 404)},
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        invoice = self.get_object()
        document_format = request.query_params.get("format", "pdf")
        if document_format == "xrechnung":
            return _file_response(
                xrechnung.invoice_xml(invoice), "application/xml", f"{invoice.number}.xml"
            )
        if document_format != "pdf":
            raise ValidationError({"format": ["format must be one of: pdf, xrechnung"]})
        return _file_response(pdf.invoice_pdf(invoice), "application/pdf", f"{invoice.number}.pdf")

    @extend_schema(
        summary="Charge the card on file for what is due",
        request=None,
        responses={
            200: ChargeResultSerializer,
            402: OpenApiResponse(ChargeFailedSerializer, description="The charge failed"),
            **error_responses(403, 404, 409),
        },
    )
    @action(detail=True, methods=["post"])
    def charge(self, request, pk=None):
        result = services.invoice_charge(invoice=self.get_object())
        if not result.paid:
            raise PaymentRequired(
                f"The charge failed: {result.failure_reason}",
                extra={"paid": False, "failure_reason": result.failure_reason},
            )
        return Response({"paid": True, "failure_reason": None})

    @extend_schema(
        summary="Void an invoice",
        request=None,
        responses={200: InvoiceSerializer, **error_responses(403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def void(self, request, pk=None):
        invoice = services.invoice_void(invoice=self.get_object())
        return Response(self.get_serializer(_invoice_queryset(self.tenant).get(pk=invoice.pk)).data)

    @extend_schema(
        summary="Mark an invoice paid (paid outside the platform)",
        request=None,
        responses={200: InvoiceSerializer, **error_responses(403, 404, 409)},
    )
    @action(detail=True, methods=["post"], url_path="mark-paid")
    def mark_paid(self, request, pk=None):
        invoice = services.invoice_mark_paid(invoice=self.get_object())
        return Response(self.get_serializer(_invoice_queryset(self.tenant).get(pk=invoice.pk)).data)


class PaymentFilter(django_filters.FilterSet):
    customer = django_filters.UUIDFilter(field_name="customer_id")
    invoice = django_filters.UUIDFilter(field_name="invoice_id")
    status = django_filters.ChoiceFilter(choices=Payment.Status.choices)

    class Meta:
        model = Payment
        fields = ["customer", "invoice", "status"]


@extend_schema_view(
    list=extend_schema(
        summary="List payments",
        responses={200: PaymentSerializer(many=True), **error_responses(400, 403)},
    ),
    retrieve=extend_schema(
        summary="Fetch a payment", responses={200: PaymentSerializer, **error_responses(403, 404)}
    ),
)
class PaymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = PaymentSerializer
    filterset_class = PaymentFilter

    def get_tenant_queryset(self, tenant):
        return Payment.objects.for_tenant(tenant).prefetch_related("receipts")

    @extend_schema(
        summary="Refund part or all of a payment",
        request=RefundCreateSerializer,
        responses={201: RefundSerializer, **error_responses(400, 403, 404)},
    )
    @action(detail=True, methods=["post"])
    def refund(self, request, pk=None):
        payment = self.get_object()
        serializer = RefundCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        refund = services.refund_create(
            payment=payment,
            amount=data["amount"],
            currency=data.get("currency") or None,
            reason=data.get("reason") or "",
            billing_admin=data.get("billing_admin") or "",
        )
        return Response(RefundSerializer(refund).data, status=status.HTTP_201_CREATED)


class RefundFilter(django_filters.FilterSet):
    customer = django_filters.UUIDFilter(field_name="customer_id")
    payment = django_filters.UUIDFilter(field_name="payment_id")

    class Meta:
        model = Refund
        fields = ["customer", "payment"]


@extend_schema_view(
    list=extend_schema(
        summary="List refunds",
        responses={200: RefundSerializer(many=True), **error_responses(400, 403)},
    ),
    retrieve=extend_schema(
        summary="Fetch a refund", responses={200: RefundSerializer, **error_responses(403, 404)}
    ),
)
class RefundViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = RefundSerializer
    filterset_class = RefundFilter

    def get_tenant_queryset(self, tenant):
        return Refund.objects.for_tenant(tenant)


class ReceiptViewSet(DownloadNegotiationMixin, TenantScopedViewSet):
    serializer_class = PaymentSerializer  # for the schema's sake; receipts are downloaded only

    def get_tenant_queryset(self, tenant):
        return Receipt.objects.for_tenant(tenant).select_related("payment")

    @extend_schema(
        summary="Download a receipt (PDF)", responses={200: _PDF, **error_responses(403, 404)}
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        receipt = self.get_object()
        return _file_response(
            pdf.receipt_pdf(receipt), "application/pdf", f"receipt-{receipt.pk}.pdf"
        )


@extend_schema_view(
    retrieve=extend_schema(
        summary="Fetch a payment method",
        responses={200: PaymentMethodSerializer, **error_responses(403, 404)},
    ),
    destroy=extend_schema(
        summary="Delete a payment method", responses={204: None, **error_responses(403, 404)}
    ),
)
class PaymentMethodViewSet(mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = PaymentMethodSerializer
    lookup_url_kwarg = "pm_id"

    def get_tenant_queryset(self, tenant):
        queryset = PaymentMethod.objects.for_tenant(tenant).filter(deleted_at__isnull=True)
        customer_id = self.kwargs.get("customer_id")
        if customer_id is not None:
            queryset = queryset.filter(customer_id=customer_id)
        return queryset

    def destroy(self, request, *args, **kwargs):
        services.payment_method_delete(payment_method=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Make this the customer's default payment method",
        request=None,
        responses={200: PaymentMethodSerializer, **error_responses(403, 404)},
    )
    @action(detail=True, methods=["post"])
    def default(self, request, **kwargs):
        method = services.payment_method_set_default(payment_method=self.get_object())
        return Response(self.get_serializer(method).data)


# --- /customers/{id}/... ---------------------------------------------------------------------


class CustomerScopedMixin:
    """Lists under /customers/{customer_id}/: an unknown (or another tenant's) customer is a 404."""

    def get_customer(self) -> Customer:
        customer = (
            Customer.objects.for_tenant(self.tenant).filter(pk=self.kwargs["customer_id"]).first()
        )
        if customer is None:
            raise NotFound("Customer not found.")
        return customer

    def get_tenant_queryset(self, tenant):
        return super().get_tenant_queryset(tenant).filter(customer=self.get_customer())


def _customer_list_schema(serializer_class):
    # The customer in the path may be unknown: these lists answer 404 too.
    return extend_schema_view(
        list=extend_schema(
            responses={200: serializer_class(many=True), **error_responses(400, 403, 404)}
        )
    )


@_customer_list_schema(InvoiceSerializer)
class CustomerInvoiceViewSet(CustomerScopedMixin, InvoiceViewSet):
    pass


@_customer_list_schema(PaymentSerializer)
class CustomerPaymentViewSet(CustomerScopedMixin, PaymentViewSet):
    pass


@_customer_list_schema(RefundSerializer)
class CustomerRefundViewSet(CustomerScopedMixin, RefundViewSet):
    pass


@extend_schema_view(
    list=extend_schema(
        summary="List a customer's payment methods",
        responses={200: PaymentMethodSerializer(many=True), **error_responses(400, 403, 404)},
    ),
)
class CustomerPaymentMethodViewSet(
    CustomerScopedMixin, mixins.ListModelMixin, PaymentMethodViewSet
):
    @extend_schema(
        summary="Start collecting a card: a one-time token for the front end",
        request=None,
        responses={201: CollectionTokenSerializer, **error_responses(403, 404)},
    )
    def start_collection(self, request, customer_id=None):
        token = services.payment_method_collection_start(customer=self.get_customer())
        return Response({"token": token}, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Complete collecting a card",
        request=CollectionCompleteSerializer,
        responses={201: PaymentMethodSerializer, **error_responses(400, 403, 404)},
    )
    def complete_collection(self, request, customer_id=None):
        customer = self.get_customer()
        serializer = CollectionCompleteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        method = services.payment_method_collection_complete(
            customer=customer, **serializer.validated_data
        )
        return Response(PaymentMethodSerializer(method).data, status=status.HTTP_201_CREATED)
