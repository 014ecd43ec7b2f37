import django_filters
from django.db.models import Prefetch
from django.http import Http404
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from customers.models import Customer
from subscriptions import selectors, services
from subscriptions.api.serializers import (
    AppliedVoucherSerializer,
    CancelSerializer,
    ChangePlanSerializer,
    ChangePriceSerializer,
    CheckoutCreateSerializer,
    CheckoutPaySerializer,
    CheckoutSerializer,
    CustomerLimitsSerializer,
    ExtendSerializer,
    FeatureSerializer,
    PaymentMethodChoiceSerializer,
    PriceSerializer,
    ProductSerializer,
    QuantityAnswerSerializer,
    QuantityChangeAnswerSerializer,
    QuantitySerializer,
    SeatsSerializer,
    SubscriptionItemCreateSerializer,
    SubscriptionItemSerializer,
    SubscriptionItemUpdateSerializer,
    SubscriptionPlanSerializer,
    SubscriptionSerializer,
    SubscriptionStartSerializer,
    SubscriptionTrialSerializer,
    VoucherApplySerializer,
    VoucherSerializer,
)
from subscriptions.models import (
    Checkout,
    Feature,
    PlanLimit,
    Price,
    Product,
    Subscription,
    SubscriptionItem,
    SubscriptionPlan,
    Voucher,
)
from tenants.api.schema import error_responses, error_with
from tenants.api.views import TenantAPIView, TenantScopedViewSet
from usage.pricing import item_pricing_check

PaymentFailedSerializer = error_with(
    "PaymentFailedError", failure_reason=serializers.CharField(allow_null=True)
)
PAYMENT_FAILED = {402: OpenApiResponse(PaymentFailedSerializer, description="The charge failed")}


def _found(value):
    if value is None:
        raise Http404
    return value


def _customer(view) -> Customer:
    return _found(
        Customer.objects.for_tenant(view.tenant).filter(pk=view.kwargs["customer_id"]).first()
    )


def _validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _price(tenant, price_id, field: str = "price") -> Price | None:
    if price_id is None:
        return None
    price = selectors.price_by_id(tenant=tenant, price_id=price_id)
    if price is None:
        raise serializers.ValidationError({field: [f"{field} is not a known price"]})
    return price


def _plan(tenant, reference, field: str) -> SubscriptionPlan:
    plan = selectors.plan_by_reference(tenant=tenant, reference=reference)
    if plan is None:
        raise serializers.ValidationError({field: [f"{field} is not a known plan id or code_name"]})
    return plan


def _payment_method(customer, payment_method_id):
    if payment_method_id is None:
        return None
    from invoicing.models import PaymentMethod

    method = (
        PaymentMethod.objects.for_tenant(customer.tenant)
        .filter(pk=payment_method_id, customer=customer, deleted_at__isnull=True)
        .first()
    )
    if method is None:
        raise serializers.ValidationError(
            {"payment_method": ["payment_method is not a payment method of this customer"]}
        )
    return method


# --- Catalog -------------------------------------------------------------------------------------


class ProductFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Product
        fields = ["name"]


@extend_schema_view(
    list=extend_schema(summary="List products", responses={200: ProductSerializer(many=True)}),
    create=extend_schema(
        summary="Create a product", responses={201: ProductSerializer, **error_responses(400)}
    ),
    retrieve=extend_schema(
        summary="Fetch a product", responses={200: ProductSerializer, **error_responses(404)}
    ),
    update=extend_schema(
        summary="Replace a product", responses={200: ProductSerializer, **error_responses(400, 404)}
    ),
    partial_update=extend_schema(
        summary="Update a product", responses={200: ProductSerializer, **error_responses(400, 404)}
    ),
)
class ProductViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = ProductSerializer
    filterset_class = ProductFilter

    def get_tenant_queryset(self, tenant):
        return Product.objects.for_tenant(tenant)

    def create(self, request):
        fields = _validated(ProductSerializer, request.data)
        product = services.product_create(tenant=self.tenant, **fields)
        return Response(ProductSerializer(product).data, status=status.HTTP_201_CREATED)

    def update(self, request, pk=None, partial=False):
        product = self.get_object()
        serializer = ProductSerializer(product, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        product = services.product_update(product=product, **serializer.validated_data)
        return Response(ProductSerializer(product).data)

    def partial_update(self, request, pk=None):
        return self.update(request, pk=pk, partial=True)

    @extend_schema(
        methods=["get"],
        summary="List a product's prices",
        responses={200: PriceSerializer(many=True), **error_responses(404)},
    )
    @extend_schema(
        methods=["post"],
        summary="Create a price of a product",
        request=PriceSerializer,
        responses={201: PriceSerializer, **error_responses(400, 404)},
    )
    @action(detail=True, methods=["get", "post"], filterset_class=None)
    def prices(self, request, pk=None):
        product = self.get_object()
        if request.method == "POST":
            context = self.get_serializer_context()
            fields = _validated(PriceSerializer, request.data, context=context)
            price = services.price_create(tenant=self.tenant, product=product, **fields)
            return Response(PriceSerializer(price).data, status=status.HTTP_201_CREATED)
        prices = Price.objects.for_tenant(self.tenant).filter(product=product)
        page = self.paginate_queryset(prices)
        return self.get_paginated_response(PriceSerializer(page, many=True).data)


@extend_schema_view(
    retrieve=extend_schema(
        summary="Fetch a price", responses={200: PriceSerializer, **error_responses(404)}
    ),
    partial_update=extend_schema(
        summary="Update a price",
        description="Billing terms of a price that subscriptions use cannot change (409).",
        responses={200: PriceSerializer, **error_responses(400, 404, 409)},
    ),
)
class PriceViewSet(mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = PriceSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def get_tenant_queryset(self, tenant):
        return Price.objects.for_tenant(tenant)

    def partial_update(self, request, pk=None):
        price = self.get_object()
        serializer = self.get_serializer(price, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        price = services.price_update(price=price, **serializer.validated_data)
        return Response(self.get_serializer(price).data)


@extend_schema_view(
    list=extend_schema(summary="List features", responses={200: FeatureSerializer(many=True)}),
    create=extend_schema(
        summary="Create a feature", responses={201: FeatureSerializer, **error_responses(400)}
    ),
    retrieve=extend_schema(
        summary="Fetch a feature", responses={200: FeatureSerializer, **error_responses(404)}
    ),
)
class FeatureViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = FeatureSerializer

    def get_tenant_queryset(self, tenant):
        return Feature.objects.for_tenant(tenant)

    def create(self, request):
        fields = _validated(FeatureSerializer, request.data)
        feature = services.feature_create(tenant=self.tenant, **fields)
        return Response(FeatureSerializer(feature).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        summary="List subscription plans",
        responses={200: SubscriptionPlanSerializer(many=True)},
    ),
    create=extend_schema(
        summary="Create a subscription plan",
        responses={201: SubscriptionPlanSerializer, **error_responses(400)},
    ),
    retrieve=extend_schema(
        summary="Fetch a subscription plan by id or code_name",
        responses={200: SubscriptionPlanSerializer, **error_responses(404)},
    ),
    update=extend_schema(
        summary="Replace a subscription plan",
        responses={200: SubscriptionPlanSerializer, **error_responses(400, 404)},
    ),
    partial_update=extend_schema(
        summary="Update a subscription plan",
        responses={200: SubscriptionPlanSerializer, **error_responses(400, 404)},
    ),
)
class SubscriptionPlanViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet
):
    serializer_class = SubscriptionPlanSerializer
    lookup_value_regex = "[^/]+"

    def get_tenant_queryset(self, tenant):
        return SubscriptionPlan.objects.for_tenant(tenant).prefetch_related(
            "features",
            "prices",
            Prefetch("limits", queryset=PlanLimit.objects.order_by("id")),
        )

    def get_object(self):
        return _found(
            selectors.by_id_or_code(self.get_queryset(), self.kwargs["pk"], code_field="code_name")
        )

    def _save(self, request, plan=None, partial=False):
        serializer = self.get_serializer(plan, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        limits = fields.pop("limits", None)
        plan = services.plan_save(
            tenant=self.tenant,
            plan=plan,
            features=fields.pop("features", None),
            prices=fields.pop("prices", None),
            limits=[(entry["feature"], entry["limit"]) for entry in limits]
            if limits is not None
            else None,
            **fields,
        )
        return self.get_serializer(self.get_queryset().get(pk=plan.pk)).data

    def create(self, request):
        return Response(self._save(request), status=status.HTTP_201_CREATED)

    def update(self, request, pk=None, partial=False):
        return Response(self._save(request, self.get_object(), partial=partial))

    def partial_update(self, request, pk=None):
        return self.update(request, pk=pk, partial=True)


@extend_schema_view(
    list=extend_schema(summary="List vouchers", responses={200: VoucherSerializer(many=True)}),
    create=extend_schema(
        summary="Create a voucher", responses={201: VoucherSerializer, **error_responses(400)}
    ),
    retrieve=extend_schema(
        summary="Fetch a voucher", responses={200: VoucherSerializer, **error_responses(404)}
    ),
    partial_update=extend_schema(
        summary="Update a voucher", responses={200: VoucherSerializer, **error_responses(400, 404)}
    ),
)
class VoucherViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = VoucherSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_tenant_queryset(self, tenant):
        return Voucher.objects.for_tenant(tenant)

    def create(self, request):
        fields = _validated(VoucherSerializer, request.data)
        voucher = services.voucher_create(tenant=self.tenant, **fields)
        return Response(VoucherSerializer(voucher).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        voucher = self.get_object()
        serializer = VoucherSerializer(voucher, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        voucher = services.voucher_update(voucher=voucher, **serializer.validated_data)
        return Response(VoucherSerializer(voucher).data)


# --- Subscriptions -------------------------------------------------------------------------------


class SubscriptionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Subscription.Status.choices)
    customer = django_filters.UUIDFilter(field_name="customer_id")
    plan = django_filters.CharFilter(method="filter_plan", help_text="Plan id or code_name.")

    class Meta:
        model = Subscription
        fields = ["status", "customer", "plan"]

    def filter_plan(self, queryset, name, value):
        plan_id = selectors.as_uuid(value)
        if plan_id is not None:
            return queryset.filter(plan_id=plan_id)
        return queryset.filter(plan__code_name=value)


def _subscription_answer(subscription) -> Response:
    return Response(SubscriptionSerializer(subscription).data)


SUBSCRIPTION_CHANGE = {200: SubscriptionSerializer, **error_responses(400, 404, 409)}


@extend_schema_view(
    list=extend_schema(
        summary="List subscriptions",
        responses={200: SubscriptionSerializer(many=True), **error_responses(400)},
    ),
    retrieve=extend_schema(
        summary="Fetch a subscription",
        responses={200: SubscriptionSerializer, **error_responses(404)},
    ),
    partial_update=extend_schema(
        summary="Update a subscription's metadata and external references",
        responses={200: SubscriptionSerializer, **error_responses(400, 404)},
    ),
)
class SubscriptionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = SubscriptionSerializer
    filterset_class = SubscriptionFilter
    http_method_names = ["get", "post", "put", "patch", "head", "options"]

    def get_tenant_queryset(self, tenant):
        return selectors.subscriptions_with_relations(Subscription.objects.for_tenant(tenant))

    def partial_update(self, request, pk=None):
        subscription = self.get_object()
        serializer = self.get_serializer(subscription, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        subscription = services.subscription_update(
            subscription=subscription, **serializer.validated_data
        )
        return _subscription_answer(subscription)

    @extend_schema(
        summary="Add seats (prorated)", request=SeatsSerializer, responses=SUBSCRIPTION_CHANGE
    )
    @action(detail=True, methods=["post"], url_path="seats/add", filterset_class=None)
    def seats_add(self, request, pk=None):
        seats = _validated(SeatsSerializer, request.data)["seats"]
        return _subscription_answer(
            services.subscription_seats_change(subscription=self.get_object(), delta=seats)
        )

    @extend_schema(
        summary="Remove seats (prorated)", request=SeatsSerializer, responses=SUBSCRIPTION_CHANGE
    )
    @action(detail=True, methods=["post"], url_path="seats/remove", filterset_class=None)
    def seats_remove(self, request, pk=None):
        seats = _validated(SeatsSerializer, request.data)["seats"]
        return _subscription_answer(
            services.subscription_seats_change(subscription=self.get_object(), delta=-seats)
        )

    @extend_schema(
        summary="Cancel a subscription", request=CancelSerializer, responses=SUBSCRIPTION_CHANGE
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def cancel(self, request, pk=None):
        values = _validated(CancelSerializer, request.data)
        return _subscription_answer(
            services.subscription_cancel(subscription=self.get_object(), **values)
        )

    @extend_schema(
        summary="Convert a trial to a paid subscription",
        request=ExtendSerializer,
        responses={**SUBSCRIPTION_CHANGE, **PAYMENT_FAILED},
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def extend(self, request, pk=None):
        values = _validated(ExtendSerializer, request.data)
        subscription = self.get_object()
        price = _price(self.tenant, values.get("price"))
        return _subscription_answer(
            services.subscription_extend(subscription=subscription, price=price)
        )

    @extend_schema(
        summary="Change the plan (instantly, prorated, or at the next cycle)",
        request=ChangePlanSerializer,
        responses=SUBSCRIPTION_CHANGE,
    )
    @action(detail=True, methods=["post"], url_path="change-plan", filterset_class=None)
    def change_plan(self, request, pk=None):
        values = _validated(ChangePlanSerializer, request.data)
        subscription = self.get_object()
        return _subscription_answer(
            services.subscription_change_plan(
                subscription=subscription,
                plan=_plan(self.tenant, values["plan"], "plan"),
                price=_price(self.tenant, values.get("price")),
                when=values["when"],
            )
        )

    @extend_schema(
        summary="Change the price (instantly, prorated, or at the next cycle)",
        request=ChangePriceSerializer,
        responses=SUBSCRIPTION_CHANGE,
    )
    @action(detail=True, methods=["post"], url_path="change-price", filterset_class=None)
    def change_price(self, request, pk=None):
        values = _validated(ChangePriceSerializer, request.data)
        subscription = self.get_object()
        return _subscription_answer(
            services.subscription_change_price(
                subscription=subscription,
                price=_price(self.tenant, values["price"]),
                when=values["when"],
            )
        )

    @extend_schema(
        summary="Set the payment method the subscription is charged with",
        request=PaymentMethodChoiceSerializer,
        responses=SUBSCRIPTION_CHANGE,
    )
    @action(detail=True, methods=["put"], url_path="payment-method", filterset_class=None)
    def payment_method(self, request, pk=None):
        values = _validated(PaymentMethodChoiceSerializer, request.data)
        subscription = self.get_object()
        method = _payment_method(subscription.customer, values["payment_method"])
        return _subscription_answer(
            services.subscription_set_payment_method(
                subscription=subscription, payment_method=method
            )
        )

    @extend_schema(
        methods=["get"],
        summary="List a subscription's items",
        responses={200: SubscriptionItemSerializer(many=True), **error_responses(404)},
    )
    @extend_schema(
        methods=["post"],
        summary="Add an add-on or a metered item",
        request=SubscriptionItemCreateSerializer,
        responses={201: SubscriptionItemSerializer, **error_responses(400, 404, 409)},
    )
    @action(detail=True, methods=["get", "post"], filterset_class=None)
    def items(self, request, pk=None):
        subscription = self.get_object()
        if request.method == "POST":
            values = _validated(SubscriptionItemCreateSerializer, request.data)
            item = services.subscription_item_add(
                subscription=subscription,
                item_type=values["item_type"],
                price=_price(self.tenant, values["price"]),
                quantity=values["quantity"],
            )
            return Response(SubscriptionItemSerializer(item).data, status=status.HTTP_201_CREATED)
        items = SubscriptionItem.objects.for_tenant(self.tenant).filter(subscription=subscription)
        page = self.paginate_queryset(items)
        return self.get_paginated_response(SubscriptionItemSerializer(page, many=True).data)


@extend_schema_view(
    retrieve=extend_schema(
        summary="Fetch a subscription item",
        responses={200: SubscriptionItemSerializer, **error_responses(404)},
    ),
    partial_update=extend_schema(
        summary="Update a subscription item",
        request=SubscriptionItemUpdateSerializer,
        responses={200: SubscriptionItemSerializer, **error_responses(400, 404, 409)},
    ),
    destroy=extend_schema(
        summary="End a subscription item now",
        responses={204: None, **error_responses(404, 409)},
    ),
)
class SubscriptionItemViewSet(mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = SubscriptionItemSerializer
    lookup_url_kwarg = "item_id"
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_tenant_queryset(self, tenant):
        return SubscriptionItem.objects.for_tenant(tenant).select_related("subscription")

    def partial_update(self, request, item_id=None):
        item = self.get_object()
        values = _validated(SubscriptionItemUpdateSerializer, request.data)
        item_pricing_check(item, values)
        item = services.subscription_item_update(item=item, **values)
        return Response(SubscriptionItemSerializer(item).data)

    def destroy(self, request, item_id=None):
        services.subscription_item_remove(item=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- A customer's subscriptions, quantities, vouchers and limits ---------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List a customer's subscriptions",
        responses={200: SubscriptionSerializer(many=True), **error_responses(400, 404)},
    ),
    create=extend_schema(
        summary="Start a subscription",
        description="Issues the first invoice; card customers are charged at once (402 with "
        "`failure_reason` when that fails, and no subscription stays active).",
        request=SubscriptionStartSerializer,
        responses={201: SubscriptionSerializer, **error_responses(400, 404, 409), **PAYMENT_FAILED},
    ),
)
class CustomerSubscriptionViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    serializer_class = SubscriptionSerializer

    def get_tenant_queryset(self, tenant):
        customer = _customer(self)
        return selectors.subscriptions_with_relations(
            selectors.customer_subscriptions(customer=customer)
        )

    def create(self, request, customer_id=None):
        values = _validated(SubscriptionStartSerializer, request.data)
        customer = _customer(self)
        subscription = services.subscription_start(
            customer=customer,
            plan=_plan(self.tenant, values["subscription_plan"], "subscription_plan"),
            price=_price(self.tenant, values.get("price")),
            schedule=values.get("schedule"),
            currency=values.get("currency"),
            seat_number=values.get("seat_number") or 1,
            payment_method=_payment_method(customer, values.get("payment_method")),
            card_token=values.get("card_token"),
            deny_trial=values["deny_trial"],
            metadata=values.get("metadata"),
        )
        return Response(SubscriptionSerializer(subscription).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        summary="List a customer's active subscriptions",
        description="Subscriptions in trial_active, active, pending_cancel or "
        "overdue_payment_open.",
        responses={200: SubscriptionSerializer(many=True), **error_responses(400, 404)},
    ),
)
class CustomerActiveSubscriptionViewSet(CustomerSubscriptionViewSet):
    def get_tenant_queryset(self, tenant):
        queryset = super().get_tenant_queryset(tenant)
        return queryset.filter(status__in=selectors.ENTITLED_STATUSES)


class CustomerTrialView(TenantAPIView):
    @extend_schema(
        summary="Start a trial",
        request=SubscriptionTrialSerializer,
        responses={201: SubscriptionSerializer, **error_responses(400, 404, 409), **PAYMENT_FAILED},
    )
    def post(self, request, customer_id):
        values = _validated(SubscriptionTrialSerializer, request.data)
        customer = _customer(self)
        subscription = services.subscription_start_trial(
            customer=customer,
            plan=_plan(self.tenant, values["subscription_plan"], "subscription_plan"),
            price=_price(self.tenant, values.get("price")),
            card_token=values.get("card_token"),
            seat_number=values.get("seat_number") or 1,
            trial_length_days=values.get("trial_length_days"),
        )
        return Response(SubscriptionSerializer(subscription).data, status=status.HTTP_201_CREATED)


class CustomerQuantityView(TenantAPIView):
    """Seed 000: the quantity of the customer's plan or add-on item for a product."""

    def _item(self, product_id) -> SubscriptionItem:
        customer = _customer(self)
        return _found(selectors.quantity_item(customer=customer, product_reference=product_id))

    @extend_schema(
        summary="Get a subscription item's quantity (seed 000)",
        responses={200: QuantityAnswerSerializer, **error_responses(404)},
    )
    def get(self, request, customer_id, product_id):
        item = self._item(product_id)
        return Response({"currentQuantity": item.quantity})

    @extend_schema(
        summary="SET or UPDATE a subscription item's quantity (seed 000)",
        description="A change mid-period is prorated like a seat change.",
        request=inline_serializer(
            name="UpdateQuantityDTO",
            fields={
                "action": serializers.ChoiceField(choices=["UPDATE", "SET"]),
                "quantity": serializers.IntegerField(),
            },
        ),
        responses={200: QuantityChangeAnswerSerializer, **error_responses(400, 404, 409)},
    )
    def patch(self, request, customer_id, product_id):
        values = _validated(QuantitySerializer, request.data)
        item = self._item(product_id)
        item = services.subscription_item_quantity_change(item=item, **values)
        return Response(
            {
                "item_type": item.item_type,
                "quantity": item.quantity,
                "unit_price": item.price.amount,
                "item_price_id": str(item.price_id),
            }
        )


class CustomerVoucherView(TenantAPIView):
    @extend_schema(
        summary="Apply a voucher to a customer",
        request=VoucherApplySerializer,
        responses={201: AppliedVoucherSerializer, **error_responses(400, 404)},
    )
    def post(self, request, customer_id):
        code = _validated(VoucherApplySerializer, request.data)["code"]
        customer = _customer(self)
        redemption = services.voucher_apply(customer=customer, code=code)
        return Response(AppliedVoucherSerializer(redemption).data, status=status.HTTP_201_CREATED)


class CustomerLimitsView(TenantAPIView):
    @extend_schema(
        summary="A customer's limits and features from its active plans",
        responses={200: CustomerLimitsSerializer, **error_responses(404)},
    )
    def get(self, request, customer_id):
        return Response(selectors.customer_limits(customer=_customer(self)))


# --- Checkouts -----------------------------------------------------------------------------------


def _checkout_answer(checkout: Checkout) -> dict:
    checkout.quote = services.checkout_quote(checkout)
    return CheckoutSerializer(checkout).data


def _checkout_paid_schema():
    from invoicing.api.serializers import InvoiceSerializer, PaymentSerializer

    return inline_serializer(
        name="CheckoutPaid",
        fields={
            "invoice": InvoiceSerializer(),
            "payment": PaymentSerializer(allow_null=True),
            "subscriptions": SubscriptionSerializer(many=True),
        },
    )


class CheckoutViewSet(mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Checkouts (seed 001): a quote of one-off items and subscriptions, paid in one invoice."""

    serializer_class = CheckoutSerializer
    model = Checkout

    def get_tenant_queryset(self, tenant):
        return Checkout.objects.for_tenant(tenant).select_related("customer", "tenant")

    @extend_schema(
        summary="Fetch a checkout and its quote",
        responses={200: CheckoutSerializer, **error_responses(404)},
    )
    def retrieve(self, request, pk=None):
        return Response(_checkout_answer(self.get_object()))

    @extend_schema(
        summary="Create a checkout (a quote)",
        request=CheckoutCreateSerializer,
        responses={201: CheckoutSerializer, **error_responses(400)},
    )
    def create(self, request):
        values = _validated(CheckoutCreateSerializer, request.data)
        customer = Customer.objects.for_tenant(self.tenant).filter(pk=values["customer"]).first()
        if customer is None:
            raise serializers.ValidationError({"customer": ["customer is not a known customer"]})
        wanted = [
            services.CheckoutSubscription(
                plan=_plan(self.tenant, entry["plan"], f"subscriptions.{index}.plan"),
                price=_price(self.tenant, entry["price"], f"subscriptions.{index}.price"),
                seat_number=entry["seat_number"],
            )
            for index, entry in enumerate(values["subscriptions"])
        ]
        checkout = services.checkout_create(
            tenant=self.tenant,
            customer=customer,
            items=[dict(item) for item in values["items"]],
            subscriptions=wanted,
            name=values["name"],
            slug=values["slug"],
            brand=values["brand"],
        )
        return Response(_checkout_answer(checkout), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Pay a checkout: issue its invoice, start its subscriptions, charge",
        request=CheckoutPaySerializer,
        responses={200: _checkout_paid_schema(), **error_responses(400, 402, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def pay(self, request, pk=None):
        from invoicing.api.serializers import InvoiceSerializer, PaymentSerializer

        checkout = self.get_object()
        values = _validated(CheckoutPaySerializer, request.data)
        paid = services.checkout_pay(
            checkout=checkout,
            card_token=values.get("card_token"),
            payment_method=_payment_method(checkout.customer, values.get("payment_method")),
        )
        return Response(
            {
                "invoice": InvoiceSerializer(paid.invoice).data,
                "payment": PaymentSerializer(paid.payment).data if paid.payment else None,
                "subscriptions": SubscriptionSerializer(paid.subscriptions, many=True).data,
            }
        )
