from rest_framework import serializers

from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import EVENT_TYPES


class WebhookEndpointSerializer(serializers.ModelSerializer):
    url = serializers.URLField(max_length=2048)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(EVENT_TYPES)),
        allow_empty=True,
        required=False,
        help_text="Event types to receive; empty means all.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "description", "enabled", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    """The creation answer: the only time the signing secret is shown."""

    secret = serializers.CharField(read_only=True)

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event",
            "event_type",
            "status",
            "attempt_count",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "delivered_at",
            "created_at",
        ]
        read_only_fields = fields
