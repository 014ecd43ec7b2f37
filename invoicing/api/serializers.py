from rest_framework import serializers

from invoicing.models import Invoice, InvoiceLine, Payment, PaymentMethod, Receipt, Refund
from tenants.api.fields import CurrencyField, DecimalStringField
from tenants.api.schema import error_with


class InvoiceLineSerializer(serializers.ModelSerializer):
    quantity = DecimalStringField()
    unit_price = DecimalStringField(allow_null=True)
    tax_rate = DecimalStringField()

    class Meta:
        model = InvoiceLine
        fields = [
            "id",
            "description",
            "kind",
            "quantity",
            "unit_price",
            "sub_total",
            "tax_rate",
            "tax_total",
            "total",
            "period_start",
            "period_end",
            "metric",
        ]
        read_only_fields = fields


class InvoiceSerializer(serializers.ModelSerializer):
    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "status",
            "customer",
            "subscription",
            "billing_reason",
            "currency",
            "period_start",
            "period_end",
            "lines",
            "sub_total",
            "tax_total",
            "total",
            "amount_due",
            "paid",
            "reverse_charge",
            "created_at",
            "finalised_at",
            "due_date",
            "paid_at",
            "biller_address",
            "payee_address",
        ]
        read_only_fields = fields


class ReceiptSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Receipt
        fields = ["id", "created_at"]
        read_only_fields = fields


class PaymentSerializer(serializers.ModelSerializer):
    receipts = ReceiptSummarySerializer(many=True, read_only=True)

    class Meta:
        model = Payment
        fields = [
            "id",
            "amount",
            "currency",
            "status",
            "invoice",
            "customer",
            "payment_method",
            "failure_reason",
            "external_reference",
            "refunded_amount",
            "created_at",
            "receipts",
        ]
        read_only_fields = fields


class RefundSerializer(serializers.ModelSerializer):
    class Meta:
        model = Refund
        fields = [
            "id",
            "amount",
            "currency",
            "payment",
            "customer",
            "reason",
            "status",
            "billing_admin",
            "external_reference",
            "created_at",
        ]
        read_only_fields = fields


class RefundCreateSerializer(serializers.Serializer):
    amount = serializers.IntegerField(min_value=1)
    currency = CurrencyField(required=False, allow_null=True, allow_blank=True)
    reason = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=500
    )
    billing_admin = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=255
    )


class PaymentMethodSerializer(serializers.ModelSerializer):
    """Display data only: the gateway's token is never part of an answer."""

    class Meta:
        model = PaymentMethod
        fields = [
            "id",
            "name",
            "brand",
            "last_four",
            "expiry_month",
            "expiry_year",
            "default",
            "role",
            "created_at",
        ]
        read_only_fields = fields


class CollectionTokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True)


class CollectionCompleteSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=255)
    card_token = serializers.CharField(max_length=255)


class ChargeResultSerializer(serializers.Serializer):
    paid = serializers.BooleanField()
    failure_reason = serializers.CharField(allow_null=True)


# The 402 of a failed charge: the error body with `paid` and `failure_reason` beside it.
ChargeFailedSerializer = error_with(
    "ChargeFailedSerializer",
    paid=serializers.BooleanField(),
    failure_reason=serializers.CharField(allow_null=True),
)
