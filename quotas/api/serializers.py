from rest_framework import serializers

from customers.models import validate_namespace_name
from invoicing.models import PaymentMethod
from quotas.models import PlanTransition
from quotas.selectors import API_LIMIT_UNITS, UNLIMITED
from subscriptions.api.serializers import (
    SubscriptionPlanSummarySerializer,
    SubscriptionPriceSummarySerializer,
)
from subscriptions.models import Metric

# --- Quotas --------------------------------------------------------------------------------------


class MaximumSerializer(serializers.Serializer):
    maximum = serializers.IntegerField(
        min_value=UNLIMITED, help_text="The hard maximum; -1 means unlimited."
    )


class ApiLimitSerializer(serializers.Serializer):
    rate = serializers.IntegerField(min_value=1, help_text="Events per unit of time.")
    burst = serializers.IntegerField(
        min_value=1, required=False, help_text="Bucket size (default: rate)."
    )
    unit = serializers.ChoiceField(choices=list(API_LIMIT_UNITS), default="per-second")


class QuotaSpecSerializer(serializers.Serializer):
    object_limits = serializers.DictField(child=MaximumSerializer(), required=False, default=dict)
    resource_limits = serializers.DictField(child=MaximumSerializer(), required=False, default=dict)
    api_limits = serializers.DictField(child=ApiLimitSerializer(), required=False, default=dict)

    def validate(self, attrs):
        tenant = self.context["tenant"]
        codes = {code for kind in attrs.values() for code in kind}
        known = set(
            Metric.objects.for_tenant(tenant).filter(code__in=codes).values_list("code", flat=True)
        )
        errors = {}
        for kind, limits in attrs.items():
            for code in limits:
                if code not in known:
                    errors[f"{kind}.{code}"] = [f"{code} is not a known metric code"]
        if errors:
            raise serializers.ValidationError(errors)
        for code, api_limit in attrs.get("api_limits", {}).items():
            attrs["api_limits"][code] = {
                **api_limit,
                "burst": api_limit.get("burst") or api_limit["rate"],
            }
        return attrs


class QuotaMetadataInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63, validators=[validate_namespace_name])
    namespace = serializers.CharField(required=False, max_length=63)
    description = serializers.CharField(
        required=False, allow_blank=True, max_length=1024, default=""
    )
    labels = serializers.DictField(child=serializers.CharField(), required=False, default=dict)
    disable = serializers.BooleanField(required=False, default=False)


class QuotaInputSerializer(serializers.Serializer):
    metadata = QuotaMetadataInputSerializer()
    spec = QuotaSpecSerializer()
    resource_version = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="PUT only: replace only this version (409 when the quota has changed since).",
    )

    def validate_resource_version(self, value):
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError:
            raise serializers.ValidationError("resource_version must be a number") from None

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("resource_version"), int):
            data = {**data, "resource_version": str(data["resource_version"])}
        return super().to_internal_value(data)


class QuotaMetadataSerializer(serializers.Serializer):
    name = serializers.CharField()
    namespace = serializers.CharField(source="namespace.name")
    description = serializers.CharField()
    labels = serializers.DictField(child=serializers.CharField())
    disable = serializers.BooleanField()


class QuotaSpecOutputSerializer(serializers.Serializer):
    object_limits = serializers.DictField(child=MaximumSerializer())
    resource_limits = serializers.DictField(child=MaximumSerializer())
    api_limits = serializers.DictField(child=ApiLimitSerializer())

    def to_representation(self, instance):
        return super().to_representation(
            {
                "object_limits": instance.get("object_limits") or {},
                "resource_limits": instance.get("resource_limits") or {},
                "api_limits": instance.get("api_limits") or {},
            }
        )


class QuotaSerializer(serializers.Serializer):
    metadata = QuotaMetadataSerializer(source="*")
    spec = QuotaSpecOutputSerializer()
    resource_version = serializers.CharField()
    created_at = serializers.DateTimeField()


class QuotaListSerializer(serializers.Serializer):
    items = QuotaSerializer(many=True)


class LimitUsageSerializer(serializers.Serializer):
    current = serializers.CharField(help_text="Decimal string: the current period's usage.")


class LimitEntrySerializer(serializers.Serializer):
    limit = MaximumSerializer()
    display_name = serializers.CharField()


class LimitUsageEntrySerializer(LimitEntrySerializer):
    usage = LimitUsageSerializer()


class ApiLimitEntrySerializer(serializers.Serializer):
    api_limit = ApiLimitSerializer()


class QuotaLimitsSerializer(serializers.Serializer):
    objects = serializers.DictField(child=LimitEntrySerializer())
    resources = serializers.DictField(child=LimitEntrySerializer())
    apis = serializers.DictField(child=ApiLimitEntrySerializer())


class QuotaUsageSerializer(serializers.Serializer):
    objects = serializers.DictField(child=LimitUsageEntrySerializer())
    resources = serializers.DictField(child=LimitUsageEntrySerializer())
    apis = serializers.DictField(child=ApiLimitEntrySerializer())


# --- Usage reports -------------------------------------------------------------------------------


class WindowSerializer(serializers.Serializer):
    from_ = serializers.DateTimeField(required=False)
    to = serializers.DateTimeField(required=False)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    def validate(self, attrs):
        if "from" in attrs and "to" in attrs and attrs["to"] <= attrs["from"]:
            raise serializers.ValidationError({"to": ["to must be after from"]})
        return attrs


class CurrentUsageItemSerializer(serializers.Serializer):
    usage_type = serializers.CharField()
    quantity = serializers.CharField()
    unit_name = serializers.CharField()
    amount = serializers.IntegerField()
    currency_code = serializers.CharField()
    start_timestamp = serializers.DateTimeField()
    end_timestamp = serializers.DateTimeField()
    fixed = serializers.BooleanField()
    status = serializers.ChoiceField(choices=["ACTIVE", "NO_DATA"])
    quantity_billable = serializers.CharField()


class CurrentUsageSerializer(serializers.Serializer):
    items = CurrentUsageItemSerializer(many=True)
    total_cost = serializers.IntegerField(help_text="Minor units of currency_code.")
    currency_code = serializers.CharField()


class HourlyItemSerializer(serializers.Serializer):
    object_name = serializers.CharField()
    namespace = serializers.CharField()
    usage_type = serializers.CharField()
    quantity = serializers.CharField()
    unit_name = serializers.CharField()
    start_timestamp = serializers.DateTimeField()
    end_timestamp = serializers.DateTimeField()


class UsageDetailSerializer(HourlyItemSerializer):
    hourly_breakdown_query = serializers.CharField()


class UsageDetailsSerializer(serializers.Serializer):
    items = UsageDetailSerializer(many=True)


class HourlyQuerySerializer(serializers.Serializer):
    query = serializers.CharField()


class HourlyUsageSerializer(serializers.Serializer):
    items = HourlyItemSerializer(many=True)


class MonthlyItemSerializer(serializers.Serializer):
    usage_type = serializers.CharField()
    quantity = serializers.CharField()
    unit_name = serializers.CharField()
    start_timestamp = serializers.DateTimeField()
    end_timestamp = serializers.DateTimeField()


class MonthlyUsageSerializer(serializers.Serializer):
    items = MonthlyItemSerializer(many=True)


class UsageSummaryRequestSerializer(serializers.Serializer):
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField()

    def validate(self, attrs):
        if attrs["end_time"] <= attrs["start_time"]:
            raise serializers.ValidationError({"end_time": ["end_time must be after start_time"]})
        return attrs


class UsageSummaryItemSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    customer = serializers.UUIDField()
    usage_type = serializers.CharField()
    quantity = serializers.CharField()
    unit_name = serializers.CharField()


class UsageSummarySerializer(serializers.Serializer):
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField()
    items = UsageSummaryItemSerializer(many=True)


# --- Plans ---------------------------------------------------------------------------------------


class PlanPriceSerializer(SubscriptionPriceSummarySerializer):
    usage = serializers.BooleanField()


class UsagePlanSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    code_name = serializers.CharField()
    is_addon = serializers.BooleanField()
    free = serializers.BooleanField()
    has_trial = serializers.BooleanField()
    requires_manual_approval = serializers.BooleanField()
    prices = PlanPriceSerializer(many=True)
    default_quotas = QuotaSpecOutputSerializer()


class UsagePlanListSerializer(serializers.Serializer):
    items = UsagePlanSerializer(many=True)


class PlanTransitionPayloadSerializer(serializers.Serializer):
    payment_provider_token = serializers.CharField(required=False, allow_blank=True)
    subscribe_addon_services = serializers.ListField(
        child=serializers.CharField(), required=False, default=list
    )
    unsubscribe_addon_services = serializers.ListField(
        child=serializers.CharField(), required=False, default=list
    )


class PlanTransitionRequestSerializer(serializers.Serializer):
    new_plan = serializers.CharField(help_text="Plan id or code_name.")
    payload = PlanTransitionPayloadSerializer(required=False, default=dict)


class PlanTransitionCreatedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    requires_manual_approval = serializers.BooleanField()


class PlanTransitionStateSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=PlanTransition.State.values)


class PlanTransitionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    state = serializers.ChoiceField(choices=PlanTransition.State.values)
    namespace = serializers.CharField(source="namespace.name")
    customer = serializers.UUIDField(source="customer_id")
    subscription = serializers.UUIDField(source="subscription_id", allow_null=True)
    from_plan = SubscriptionPlanSummarySerializer(allow_null=True)
    to_plan = SubscriptionPlanSummarySerializer()
    requires_manual_approval = serializers.BooleanField()
    subscribe_addon_services = serializers.SerializerMethodField()
    unsubscribe_addon_services = serializers.SerializerMethodField()
    failure_reason = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    approved_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()

    def get_subscribe_addon_services(self, transition) -> list[str]:
        return list((transition.payload or {}).get("subscribe_addon_services") or [])

    def get_unsubscribe_addon_services(self, transition) -> list[str]:
        return list((transition.payload or {}).get("unsubscribe_addon_services") or [])

    def get_failure_reason(self, transition) -> str | None:
        return transition.failure_reason or None


# --- Payment methods, add-ons, invoices, subscriptions -------------------------------------------


class NamespacePaymentMethodRequestSerializer(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=PaymentMethod.Role.choices, default=PaymentMethod.Role.NORMAL
    )
    token = serializers.CharField(max_length=255, help_text="A card token of the gateway.")
    contact = serializers.DictField(
        required=False, help_text="The billing contact, kept with the card as sent."
    )


class PaymentMethodNameSerializer(serializers.Serializer):
    name = serializers.CharField()


class PaymentMethodRoleSerializer(serializers.Serializer):
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=PaymentMethod.Role.choices)


class AddonRequestSerializer(serializers.Serializer):
    addon = serializers.CharField(help_text="The add-on plan's code_name.")


class AddonAnswerSerializer(serializers.Serializer):
    addon = serializers.CharField()
    subscribed = serializers.BooleanField()
    subscription = serializers.UUIDField()


class NamespaceInvoiceSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The invoice number.")
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    amount = serializers.IntegerField(help_text="The invoice total, minor units.")
    currency = serializers.CharField()
    status = serializers.CharField()
    active = serializers.BooleanField(help_text="The invoice bills the current period.")


class NamespaceInvoiceListSerializer(serializers.Serializer):
    invoices = NamespaceInvoiceSerializer(many=True)


class InvoicePdfSerializer(serializers.Serializer):
    pdf = serializers.CharField(help_text="The invoice PDF, base64.")


class BillingPeriodSerializer(serializers.Serializer):
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    invoice = serializers.CharField(allow_null=True)


class NamespaceSubscriptionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    plan = SubscriptionPlanSummarySerializer()
    status = serializers.CharField()
    currency = serializers.CharField()
    schedule = serializers.CharField()
    seat_number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    current_period_start = serializers.DateTimeField()
    valid_until = serializers.DateTimeField()
    addons = serializers.ListField(child=serializers.CharField())
    previous_billing_periods = BillingPeriodSerializer(many=True)


class NamespaceSubscriptionListSerializer(serializers.Serializer):
    subscriptions = NamespaceSubscriptionSerializer(many=True)
