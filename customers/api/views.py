import django_filters
from django.db.models import F
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from customers import services
from customers.api.serializers import CustomerSerializer, NamespaceSerializer
from customers.models import Customer, Namespace
from tenants.api.schema import error_responses
from tenants.api.views import TenantScopedViewSet


class CustomerFilter(django_filters.FilterSet):
    email = django_filters.CharFilter(lookup_expr="iexact")
    country = django_filters.CharFilter(lookup_expr="iexact")
    reference = django_filters.CharFilter()
    external_reference = django_filters.CharFilter()
    company_name = django_filters.CharFilter(lookup_expr="icontains")
    status = django_filters.ChoiceFilter(choices=Customer.Status.choices)

    class Meta:
        model = Customer
        fields = ["email", "country", "reference", "external_reference", "company_name", "status"]


@extend_schema_view(
    list=extend_schema(
        summary="List customers",
        responses={200: CustomerSerializer(many=True), **error_responses(400, 403)},
    ),
    create=extend_schema(
        summary="Create a customer",
        responses={201: CustomerSerializer, **error_responses(400, 403, 409)},
    ),
    retrieve=extend_schema(
        summary="Fetch a customer", responses={200: CustomerSerializer, **error_responses(403, 404)}
    ),
    update=extend_schema(
        summary="Replace a customer",
        responses={200: CustomerSerializer, **error_responses(400, 403, 404, 409)},
    ),
    partial_update=extend_schema(
        summary="Update a customer",
        responses={200: CustomerSerializer, **error_responses(400, 403, 404, 409)},
    ),
)
class CustomerViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    TenantScopedViewSet,
):
    serializer_class = CustomerSerializer
    filterset_class = CustomerFilter
    lookup_value_regex = "[^/]+"

    def get_tenant_queryset(self, tenant):
        customers = Customer.objects.for_tenant(tenant)
        if self.action == "list":
            # A page shows only the default namespace's name: annotated, it saves building a
            # Namespace (and parsing its timestamps and labels) for each of up to 100 rows.
            return customers.annotate(default_namespace_name=F("default_namespace__name"))
        return customers.select_related("default_namespace")

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        namespace_name = fields.pop("namespace", None)
        customer = services.customer_create(
            tenant=self.tenant, namespace_name=namespace_name, **fields
        )
        return Response(self.get_serializer(customer).data, status=status.HTTP_201_CREATED)

    def update(self, request, pk=None, partial=False):
        customer = self.get_object()
        serializer = self.get_serializer(customer, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        customer = services.customer_update(customer=customer, **serializer.validated_data)
        return Response(self.get_serializer(customer).data)

    def partial_update(self, request, pk=None):
        return self.update(request, pk=pk, partial=True)

    @extend_schema(request=None, responses={200: CustomerSerializer, **error_responses(403, 404)})
    @action(detail=True, methods=["post"])
    def disable(self, request, pk=None):
        customer = services.customer_disable(customer=self.get_object())
        return Response(self.get_serializer(customer).data)

    @extend_schema(request=None, responses={200: CustomerSerializer, **error_responses(403, 404)})
    @action(detail=True, methods=["post"])
    def enable(self, request, pk=None):
        customer = services.customer_enable(customer=self.get_object())
        return Response(self.get_serializer(customer).data)


class NamespaceFilter(django_filters.FilterSet):
    customer = django_filters.UUIDFilter(field_name="customer_id")

    class Meta:
        model = Namespace
        fields = ["customer"]


@extend_schema_view(
    list=extend_schema(
        summary="List namespaces",
        responses={200: NamespaceSerializer(many=True), **error_responses(400, 403)},
    ),
    create=extend_schema(
        summary="Create a namespace",
        responses={201: NamespaceSerializer, **error_responses(400, 403)},
    ),
    retrieve=extend_schema(
        summary="Fetch a namespace",
        responses={200: NamespaceSerializer, **error_responses(403, 404)},
    ),
    partial_update=extend_schema(
        summary="Update a namespace's description or labels",
        responses={200: NamespaceSerializer, **error_responses(400, 403, 404)},
    ),
    destroy=extend_schema(
        summary="Delete a namespace", responses={204: None, **error_responses(403, 404, 409)}
    ),
)
class NamespaceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = NamespaceSerializer
    filterset_class = NamespaceFilter
    lookup_field = "name"
    lookup_url_kwarg = "ns"
    lookup_value_regex = "[^/]+"

    def get_tenant_queryset(self, tenant):
        return Namespace.objects.for_tenant(tenant)

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        namespace = services.namespace_create(tenant=self.tenant, **serializer.validated_data)
        return Response(self.get_serializer(namespace).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, ns=None):
        namespace = self.get_object()
        serializer = self.get_serializer(namespace, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        fields = {
            k: v for k, v in serializer.validated_data.items() if k in ("description", "labels")
        }
        namespace = services.namespace_update(namespace=namespace, **fields)
        return Response(self.get_serializer(namespace).data)

    def destroy(self, request, ns=None):
        namespace = self.get_object()
        services.namespace_delete(namespace=namespace)
        return Response(status=status.HTTP_204_NO_CONTENT)
