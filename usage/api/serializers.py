import re

from rest_framework import serializers

from customers.models import UsageLimit
from subscriptions.models import Metric
from tenants.api.fields import DecimalStringField
from usage.models import UsageEvent

_DATETIME = serializers.DateTimeField()
PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")


class MetricFilterSerializer(serializers.Serializer):
    name = serializers.RegexField(PROPERTY_NAME, max_length=100)
    value = serializers.CharField(max_length=255)
    type = serializers.ChoiceField(choices=["inclusive", "exclusive"], default="inclusive")


class MetricSerializer(serializers.ModelSerializer):
    aggregation_property = serializers.RegexField(
        PROPERTY_NAME, max_length=100, required=False, allow_blank=True
    )
    filters = MetricFilterSerializer(many=True, required=False)

    class Meta:
        model = Metric
        fields = [
            "id",
            "name",
            "code",
            "aggregation_method",
            "aggregation_property",
            "filters",
            "unit_name",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]


class EventInputSerializer(serializers.Serializer):
    """Documents the event body; ingestion validates it by hand (usage.services)."""

    event_id = serializers.CharField(max_length=255)
    subscription = serializers.UUIDField(required=False)
    customer = serializers.CharField(required=False, help_text="Customer id or reference.")
    code = serializers.CharField(help_text="The metric code.")
    value = serializers.DecimalField(
        max_digits=30, decimal_places=10, required=False, help_text="Required for sum/max/latest."
    )
    properties = serializers.DictField(required=False)
    timestamp = serializers.DateTimeField(
        required=False, help_text="Default now; at most 35 days old and 5 minutes ahead."
    )
    namespace = serializers.CharField(required=False)


class EventBatchInputSerializer(serializers.Serializer):
    events = EventInputSerializer(many=True, min_length=1, max_length=1000)


class EventBatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()


class EventSerializer(serializers.ModelSerializer):
    customer = serializers.UUIDField(source="customer_id", read_only=True)
    subscription = serializers.UUIDField(source="subscription_id", read_only=True, allow_null=True)
    namespace = serializers.CharField(source="namespace.name", read_only=True)
    value = DecimalStringField(read_only=True, allow_null=True)
    properties = serializers.DictField(read_only=True)

    class Meta:
        model = UsageEvent
        fields = [
            "id",
            "event_id",
            "code",
            "customer",
            "subscription",
            "namespace",
            "value",
            "properties",
            "timestamp",
            "renewal_order_reference",
            "created_at",
        ]
        read_only_fields = fields


def event_data(row, namespace_name: str) -> dict:
    """The EventSerializer shape of a freshly ingested row (no query, no serializer)."""
    value = row.value
    return {
        "id": str(row.id),
        "event_id": row.event_id,
        "code": row.code,
        "customer": str(row.customer_id),
        "subscription": str(row.subscription_id) if row.subscription_id else None,
        "namespace": namespace_name,
        "value": DecimalStringField().to_representation(value) if value is not None else None,
        "properties": row.properties,
        "timestamp": _DATETIME.to_representation(row.timestamp),
        "renewal_order_reference": None,
        "created_at": _DATETIME.to_representation(row.created_at),
    }


class UsageSerializer(serializers.Serializer):
    """A seed-004 usage: a UsageEvent with a usage_reference."""

    usage_reference = serializers.IntegerField(read_only=True)
    subscription_reference = serializers.UUIDField(source="subscription_id", read_only=True)
    option_code = serializers.CharField(source="code", read_only=True)
    usage_start = serializers.DateTimeField(read_only=True)
    usage_end = serializers.DateTimeField(read_only=True)
    units = serializers.SerializerMethodField()
    description = serializers.CharField(read_only=True)
    renewal_order_reference = serializers.CharField(read_only=True, allow_null=True)

    def get_units(self, usage) -> int:
        return int(usage.value or 0)


class UsageInputSerializer(serializers.Serializer):
    option_code = serializers.CharField(max_length=100)
    usage_start = serializers.DateTimeField()
    usage_end = serializers.DateTimeField()
    units = serializers.IntegerField(min_value=0, max_value=2**31 - 1)
    description = serializers.CharField(
        max_length=255, required=False, allow_blank=True, allow_null=True
    )

    def validate(self, attrs):
        if attrs["usage_end"] < attrs["usage_start"]:
            raise serializers.ValidationError(
                {"usage_end": ["usage_end must not be before usage_start"]}
            )
        return attrs


class UsageUpdateSerializer(serializers.Serializer):
    units = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    description = serializers.CharField(max_length=255, required=False, allow_blank=True)


class UsagePageSerializer(serializers.Serializer):
    data = UsageSerializer(many=True)
    page = serializers.IntegerField()
    limit = serializers.IntegerField()
    total = serializers.IntegerField()


class UsageQuerySerializer(serializers.Serializer):
    interval_start = serializers.DateTimeField()
    interval_end = serializers.DateTimeField()
    page = serializers.IntegerField(min_value=1)
    limit = serializers.IntegerField(min_value=1, max_value=100)
    option_code = serializers.CharField(required=False)
    renewal_order_reference = serializers.CharField(required=False)


class UsageDeleteQuerySerializer(serializers.Serializer):
    usage_reference = serializers.IntegerField(required=False)
    option_code = serializers.CharField(required=False)
    interval_start = serializers.DateTimeField(required=False)
    interval_end = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        if ("interval_start" in attrs) != ("interval_end" in attrs):
            raise serializers.ValidationError(
                {"interval_end": ["interval_start and interval_end go together"]}
            )
        if not attrs:
            raise serializers.ValidationError(
                "give usage_reference, option_code or interval_start and interval_end"
            )
        return attrs


class MoneySerializer(serializers.Serializer):
    amount = serializers.IntegerField()
    currency = serializers.CharField()


class CostMetricSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    code = serializers.CharField()


class MetricCostSerializer(serializers.Serializer):
    metric = CostMetricSerializer()
    usage = serializers.CharField(help_text="Decimal string.")
    cost = MoneySerializer()


class CostEstimateSerializer(serializers.Serializer):
    costs = MetricCostSerializer(many=True)
    cost = MoneySerializer()


class UsageLimitSerializer(serializers.ModelSerializer):
    amount = serializers.IntegerField(min_value=0)
    action = serializers.ChoiceField(choices=UsageLimit.Action.choices)

    class Meta:
        model = UsageLimit
        fields = ["id", "amount", "action"]
        read_only_fields = ["id"]
