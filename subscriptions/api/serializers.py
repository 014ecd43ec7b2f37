from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from subscriptions.models import (
    Feature,
    Metric,
    Price,
    Product,
    Schedule,
    Subscription,
    SubscriptionItem,
    SubscriptionPlan,
    TaxType,
    Voucher,
    VoucherRedemption,
    price_rule_errors,
)
from subscriptions.selectors import as_uuid, by_id_or_code
from tenants.api.fields import CurrencyField, DecimalStringField, decimal_text, timestamp_text
from tenants.api.serializers import FastOutputMixin
from usage.pricing import ItemPricingSerializer


def _tenant(serializer):
    request = serializer.context.get("request")
    return request.auth.tenant if request is not None and request.auth is not None else None


class TenantPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related id that must belong to the caller's tenant (any other id is "does not exist")."""

    def __init__(self, model, **kwargs):
        self.model = model
        super().__init__(queryset=model.objects.none(), **kwargs)

    def get_queryset(self):
        tenant = _tenant(self.root)
        return self.model.objects.for_tenant(tenant) if tenant else self.model.objects.none()

    def to_internal_value(self, data):
        if as_uuid(data) is None:
            self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(data)


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", "name", "description", "external_reference", "tax_type", "created_at"]
        read_only_fields = ["id", "created_at"]


class TierSerializer(serializers.Serializer):
    first_unit = serializers.IntegerField(min_value=1)
    last_unit = serializers.IntegerField(min_value=1, allow_null=True, required=False, default=None)
    unit_price = DecimalStringField(min_value=0, help_text="Minor units; may be a fraction.")
    flat_fee = serializers.IntegerField(min_value=0, required=False, default=0)

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        values["unit_price"] = decimal_text(values["unit_price"])
        return values


class PriceSerializer(serializers.ModelSerializer):
    product = serializers.PrimaryKeyRelatedField(read_only=True)
    currency = CurrencyField()
    schedule = serializers.ChoiceField(
        choices=Schedule.choices, required=False, allow_null=True, allow_blank=True
    )
    tiers = TierSerializer(many=True, required=False, allow_null=True)
    metric = TenantPrimaryKeyRelatedField(Metric, required=False, allow_null=True)
    amount = serializers.IntegerField(min_value=0)

    class Meta:
        model = Price
        fields = [
            "id",
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
            "created_at",
        ]
        read_only_fields = ["id", "product", "created_at"]
        extra_kwargs = {"recurring": {"required": True}}

    def validate(self, attrs):
        if attrs.get("schedule") is None and "schedule" in attrs:
            attrs["schedule"] = ""

        def current(name, default=None):
            if name in attrs:
                return attrs[name]
            if self.instance is not None:
                return getattr(self.instance, name)
            return default

        errors = price_rule_errors(
            recurring=current("recurring", True),
            schedule=current("schedule", ""),
            currency=current("currency", ""),
            type=current("type", Price.Type.FIXED_PRICE),
            units=current("units"),
            tiers=current("tiers"),
            usage=current("usage", False),
            metric=current("metric"),
        )
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["schedule"] = instance.schedule or None
        return data


class FeatureSerializer(serializers.ModelSerializer):
    class Meta:
        model = Feature
        fields = ["id", "code", "name", "description", "created_at"]
        read_only_fields = ["id", "created_at"]
        validators = []


@extend_schema_field(OpenApiTypes.STR)
class FeatureReferenceField(serializers.Field):
    """A feature by id or code on input; its id on output."""

    def to_internal_value(self, data):
        features = Feature.objects.for_tenant(_tenant(self.root))
        feature = (
            by_id_or_code(features, data, code_field="code") if isinstance(data, str) else None
        )
        if feature is None:
            raise serializers.ValidationError(f"{data!r} is not a feature id or code")
        return feature

    def to_representation(self, value):
        return str(value.pk)


class PlanLimitSerializer(serializers.Serializer):
    feature = FeatureReferenceField()
    limit = serializers.IntegerField()


class SubscriptionPlanSerializer(serializers.ModelSerializer):
    product = TenantPrimaryKeyRelatedField(Product)
    features = serializers.ListField(child=FeatureReferenceField(), required=False)
    limits = PlanLimitSerializer(many=True, required=False)
    prices = serializers.ListField(child=TenantPrimaryKeyRelatedField(Price), required=False)

    class Meta:
        model = SubscriptionPlan
        fields = [
            "id",
            "name",
            "code_name",
            "product",
            "public",
            "per_seat",
            "user_count",
            "free",
            "has_trial",
            "trial_length_days",
            "is_trial_standalone",
            "is_addon",
            "requires_manual_approval",
            "features",
            "limits",
            "prices",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
        validators = []

    def validate(self, attrs):
        limits = attrs.get("limits") or []
        codes = [entry["feature"].code for entry in limits]
        if len(codes) != len(set(codes)):
            raise serializers.ValidationError({"limits": ["limits name each feature at most once"]})
        return attrs

    def to_representation(self, instance):
        return {
            "id": str(instance.id),
            "name": instance.name,
            "code_name": instance.code_name,
            "product": str(instance.product_id),
            "public": instance.public,
            "per_seat": instance.per_seat,
            "user_count": instance.user_count,
            "free": instance.free,
            "has_trial": instance.has_trial,
            "trial_length_days": instance.trial_length_days,
            "is_trial_standalone": instance.is_trial_standalone,
            "is_addon": instance.is_addon,
            "requires_manual_approval": instance.requires_manual_approval,
            "features": [str(feature.pk) for feature in instance.features.all()],
            "limits": [
                {"feature": str(plan_limit.feature_id), "limit": plan_limit.limit}
                for plan_limit in instance.limits.all()
            ],
            "prices": [str(price.pk) for price in instance.prices.all()],
            "created_at": timestamp_text(instance.created_at),
        }


class VoucherAmountSerializer(serializers.Serializer):
    currency = CurrencyField()
    amount = serializers.IntegerField(min_value=1)


class VoucherSerializer(serializers.ModelSerializer):
    percentage = DecimalStringField(
        required=False, allow_null=True, min_value=0, max_value=100, max_digits=7, decimal_places=4
    )
    amounts = VoucherAmountSerializer(many=True, required=False)

    class Meta:
        model = Voucher
        fields = [
            "id",
            "code",
            "type",
            "percentage",
            "amounts",
            "duration",
            "duration_in_cycles",
            "max_redemptions",
            "disabled",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
        validators = []

    def validate(self, attrs):
        def current(name, default=None):
            if name in attrs:
                return attrs[name]
            return getattr(self.instance, name) if self.instance is not None else default

        errors = {}
        voucher_type = current("type", Voucher.Type.PERCENTAGE)
        if voucher_type == Voucher.Type.PERCENTAGE:
            percentage = current("percentage")
            if percentage is None or percentage <= 0:
                errors["percentage"] = ["percentage (above 0, at most 100) is required"]
        else:
            amounts = current("amounts") or []
            if not amounts:
                errors["amounts"] = ["amounts are required for a fixed_credit voucher"]
            currencies = [entry["currency"] for entry in amounts]
            if len(currencies) != len(set(currencies)):
                errors["amounts"] = ["amounts name each currency at most once"]
        if current("duration") == Voucher.Duration.REPEATING and not current("duration_in_cycles"):
            errors["duration_in_cycles"] = [
                "duration_in_cycles (at least 1) is required for a repeating voucher"
            ]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class AppliedVoucherSerializer(serializers.ModelSerializer):
    voucher = VoucherSerializer(read_only=True)

    class Meta:
        model = VoucherRedemption
        fields = ["id", "customer", "voucher", "remaining_cycles", "redeemed_at", "active"]
        read_only_fields = fields


class VoucherApplySerializer(serializers.Serializer):
    code = serializers.CharField(max_length=100)


# --- Subscriptions -------------------------------------------------------------------------------


class SubscriptionPlanSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    code_name = serializers.CharField()


class SubscriptionPriceSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    schedule = serializers.CharField()


class SubscriptionSerializer(FastOutputMixin, serializers.ModelSerializer):
    customer = serializers.UUIDField(source="customer_id", read_only=True)
    plan = SubscriptionPlanSummarySerializer(read_only=True)
    price = SubscriptionPriceSummarySerializer(read_only=True)
    payment_method = serializers.UUIDField(
        source="payment_method_id", read_only=True, allow_null=True
    )
    pending_change = serializers.JSONField(read_only=True, allow_null=True)
    metadata = serializers.DictField(required=False)

    class Meta:
        model = Subscription
        fields = [
            "id",
            "customer",
            "plan",
            "price",
            "seat_number",
            "schedule",
            "currency",
            "status",
            "created_at",
            "updated_at",
            "started_at",
            "current_period_start",
            "valid_until",
            "trial_ends_at",
            "cancel_at",
            "ended_at",
            "main_external_reference",
            "child_external_reference",
            "payment_method",
            "pending_change",
            "metadata",
        ]
        read_only_fields = [
            name
            for name in fields
            if name not in ("metadata", "main_external_reference", "child_external_reference")
        ]


class SubscriptionStartSerializer(serializers.Serializer):
    subscription_plan = serializers.CharField(help_text="The plan's id or code_name.")
    price = serializers.UUIDField(required=False, allow_null=True)
    schedule = serializers.ChoiceField(
        choices=Schedule.choices,
        required=False,
        allow_null=True,
        help_text="With currency, picks the plan's price when price is absent.",
    )
    currency = CurrencyField(required=False, allow_null=True)
    payment_method = serializers.UUIDField(required=False, allow_null=True)
    card_token = serializers.CharField(required=False, allow_null=True, max_length=255)
    seat_number = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    deny_trial = serializers.BooleanField(required=False, default=False)
    metadata = serializers.DictField(required=False, allow_null=True)

    def validate(self, attrs):
        if not attrs.get("price") and bool(attrs.get("schedule")) != bool(attrs.get("currency")):
            raise serializers.ValidationError(
                {"schedule": ["schedule and currency go together when price is absent"]}
            )
        return attrs


class SubscriptionTrialSerializer(serializers.Serializer):
    subscription_plan = serializers.CharField(help_text="The plan's id or code_name.")
    price = serializers.UUIDField(required=False, allow_null=True)
    card_token = serializers.CharField(required=False, allow_null=True, max_length=255)
    seat_number = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    trial_length_days = serializers.IntegerField(required=False, allow_null=True, min_value=1)


class SeatsSerializer(serializers.Serializer):
    seats = serializers.IntegerField(min_value=1)


class CancelSerializer(serializers.Serializer):
    when = serializers.ChoiceField(
        choices=["end-of-run", "instantly", "specific-date"], default="end-of-run"
    )
    refund_type = serializers.ChoiceField(choices=["none", "full", "prorate"], default="none")
    date = serializers.DateField(required=False, allow_null=True)
    comment = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class ExtendSerializer(serializers.Serializer):
    price = serializers.UUIDField(required=False, allow_null=True)


class ChangePlanSerializer(serializers.Serializer):
    plan = serializers.CharField(help_text="The plan's id or code_name.")
    price = serializers.UUIDField(required=False, allow_null=True)
    when = serializers.ChoiceField(choices=["instantly", "next-cycle"])


class ChangePriceSerializer(serializers.Serializer):
    price = serializers.UUIDField()
    when = serializers.ChoiceField(choices=["instantly", "next-cycle"])

    def to_internal_value(self, data):
        # Seed 001 spells it next_cycle in this one place.
        if isinstance(data, dict) and data.get("when") == "next_cycle":
            data = {**data, "when": "next-cycle"}
        return super().to_internal_value(data)


class PaymentMethodChoiceSerializer(serializers.Serializer):
    payment_method = serializers.UUIDField()


class SubscriptionItemSerializer(FastOutputMixin, serializers.ModelSerializer):
    subscription = serializers.UUIDField(source="subscription_id", read_only=True)
    product = serializers.UUIDField(source="product_id", read_only=True)
    price = serializers.UUIDField(source="price_id", read_only=True)
    metric = serializers.UUIDField(source="metric_id", read_only=True, allow_null=True)
    unit_price = DecimalStringField(read_only=True)
    pricing = serializers.JSONField(read_only=True, allow_null=True)
    regions = serializers.JSONField(read_only=True)
    active_range = serializers.SerializerMethodField()

    class Meta:
        model = SubscriptionItem
        fields = [
            "id",
            "subscription",
            "item_type",
            "product",
            "price",
            "quantity",
            "unit_price",
            "metric",
            "calc_rule_type",
            "pricing",
            "active_from",
            "active_to",
            "active_range",
            "regions",
            "description",
            "comment",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                "start": {"type": "string", "format": "date-time", "nullable": True},
                "end": {"type": "string", "format": "date-time", "nullable": True},
            },
            "required": ["start", "end"],
        }
    )
    def get_active_range(self, item) -> dict:
        return {"start": timestamp_text(item.active_from), "end": timestamp_text(item.active_to)}


class SubscriptionItemCreateSerializer(serializers.Serializer):
    item_type = serializers.ChoiceField(
        choices=[SubscriptionItem.ItemType.ADDON, SubscriptionItem.ItemType.USAGE]
    )
    price = serializers.UUIDField()
    quantity = serializers.IntegerField(min_value=1, required=False, default=1)


class SubscriptionItemUpdateSerializer(serializers.Serializer):
    # Seed 002's metered-item body (USAGE): the rule and its `price` object, stored as `pricing`.
    calc_rule_type = serializers.ChoiceField(
        choices=SubscriptionItem.CalcRuleType.choices, required=False, allow_null=True
    )
    price = ItemPricingSerializer(source="pricing", required=False, allow_null=True)
    quantity = serializers.IntegerField(min_value=1, required=False)
    active_from = serializers.DateTimeField(required=False, allow_null=True)
    active_to = serializers.DateTimeField(required=False, allow_null=True)
    description = serializers.CharField(min_length=1, max_length=255, required=False)
    comment = serializers.CharField(min_length=1, max_length=255, required=False)


class QuantitySerializer(serializers.Serializer):
    """Seed 000's UpdateQuantityDTO, with its exact messages (class-validator's wording)."""

    ACTIONS = ("UPDATE", "SET")

    action = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    quantity = serializers.JSONField(required=False)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            data = {}
        errors: dict[str, list[str]] = {}
        action = data.get("action")
        quantity = data.get("quantity")
        if action in (None, ""):
            errors["action"] = ["action should not be empty", "action must be a valid enum value"]
        elif action not in self.ACTIONS:
            errors["action"] = ["action must be a valid enum value"]
        if quantity is None or quantity == "":
            errors["quantity"] = [
                "quantity should not be empty",
                "quantity must be a number conforming to the specified constraints",
            ]
        elif isinstance(quantity, bool) or not isinstance(quantity, int | float):
            errors["quantity"] = [
                "quantity must be a number conforming to the specified constraints"
            ]
        elif quantity != int(quantity):
            errors["quantity"] = ["quantity must be an integer number"]
        elif action == "SET" and quantity < 1:
            errors["quantity"] = ["quantity must not be less than 1"]
        if errors:
            raise serializers.ValidationError(errors)
        return {"action": action, "quantity": int(quantity)}


class QuantityAnswerSerializer(serializers.Serializer):
    currentQuantity = serializers.IntegerField()  # seed 000 spells it in camelCase


class QuantityChangeAnswerSerializer(serializers.Serializer):
    item_type = serializers.ChoiceField(choices=["plan", "addon"])
    quantity = serializers.IntegerField()
    unit_price = serializers.IntegerField()
    item_price_id = serializers.CharField()


class LimitFeatureSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class LimitSerializer(serializers.Serializer):
    feature = LimitFeatureSerializer()
    limit = serializers.IntegerField()


class LimitsFeatureSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    code = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()


class CustomerLimitsSerializer(serializers.Serializer):
    limits = LimitSerializer(many=True)
    features = LimitsFeatureSerializer(many=True)
    user_count = serializers.IntegerField()


# --- Checkouts -----------------------------------------------------------------------------------


class CheckoutItemSerializer(serializers.Serializer):
    description = serializers.CharField(max_length=255)
    amount = serializers.IntegerField(min_value=0, help_text="Minor units.")
    currency = CurrencyField()
    include_tax = serializers.BooleanField(required=False, default=False)
    tax_type = serializers.ChoiceField(choices=TaxType.choices, required=False, default="standard")


class CheckoutSubscriptionSerializer(serializers.Serializer):
    plan = serializers.CharField(help_text="The plan's id or code_name.")
    price = serializers.UUIDField()
    seat_number = serializers.IntegerField(required=False, default=1, min_value=1)


class CheckoutCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    brand = serializers.CharField(max_length=64, required=False, default="default")
    slug = serializers.SlugField(max_length=255, required=False, allow_blank=True, default="")
    customer = serializers.UUIDField()
    items = CheckoutItemSerializer(many=True, required=False, default=list)
    subscriptions = CheckoutSubscriptionSerializer(many=True, required=False, default=list)


class CheckoutLineSerializer(serializers.Serializer):
    description = serializers.CharField()
    kind = serializers.CharField()
    quantity = DecimalStringField()
    unit_price = DecimalStringField(allow_null=True)
    sub_total = serializers.IntegerField()
    tax_rate = DecimalStringField()
    tax_total = serializers.IntegerField()
    total = serializers.IntegerField()


class CheckoutSerializer(serializers.Serializer):
    """A checkout with its quote: the lines and totals its invoice has (or will have)."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    slug = serializers.CharField()
    brand = serializers.CharField()
    currency = serializers.CharField()
    customer = serializers.UUIDField(source="customer_id")
    status = serializers.CharField()
    items = CheckoutItemSerializer(many=True)
    subscriptions = CheckoutSubscriptionSerializer(many=True)
    lines = CheckoutLineSerializer(many=True, source="quote.new_lines")
    sub_total = serializers.IntegerField(source="quote.invoice.sub_total")
    tax_total = serializers.IntegerField(source="quote.invoice.tax_total")
    total = serializers.IntegerField(source="quote.invoice.total")
    invoice = serializers.UUIDField(source="invoice_id", allow_null=True)
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)


class CheckoutPaySerializer(serializers.Serializer):
    card_token = serializers.CharField(required=False, allow_null=True, max_length=255)
    payment_method = serializers.UUIDField(required=False, allow_null=True)
