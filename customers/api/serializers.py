from rest_framework import serializers

from customers.models import Customer, Namespace, validate_namespace_name
from tenants.api.fields import (
    CountryField,
    CurrencyField,
    DecimalStringField,
    decimal_text,
    timestamp_text,
)
from tenants.api.serializers import FastOutputMixin


class AddressSerializer(serializers.Serializer):
    company_name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    street_line_one = serializers.CharField(max_length=255, required=False, allow_blank=True)
    street_line_two = serializers.CharField(max_length=255, required=False, allow_blank=True)
    city = serializers.CharField(max_length=255, required=False, allow_blank=True)
    region = serializers.CharField(max_length=255, required=False, allow_blank=True)
    country = CountryField(required=False, allow_blank=True)
    postcode = serializers.CharField(max_length=32, required=False, allow_blank=True)


def _null_to_default(model_field_name: str):
    default = Customer._meta.get_field(model_field_name).default
    return default() if callable(default) else default


class CustomerSerializer(serializers.ModelSerializer):
    address = AddressSerializer(source="*", required=False)
    standard_tax_rate = DecimalStringField(
        required=False, allow_null=True, min_value=0, max_value=100
    )
    digital_tax_rate = DecimalStringField(
        required=False, allow_null=True, min_value=0, max_value=100
    )
    currency = CurrencyField(required=False, allow_blank=True, allow_null=True)
    default_namespace = serializers.SlugRelatedField(slug_field="name", read_only=True)
    namespace = serializers.CharField(
        write_only=True,
        required=False,
        validators=[validate_namespace_name],
        help_text="Name of the customer's default namespace (create only); "
        "defaults to c- and the last 12 hex digits of the id.",
    )
    metadata = serializers.DictField(required=False)

    # Fields the seed documents as nullable on input: null means "the default".
    NULL_MEANS_DEFAULT = (
        "tax_number",
        "billing_type",
        "type",
        "reference",
        "external_reference",
        "locale",
        "brand",
        "invoice_format",
        "marketing_opt_in",
        "name",
    )

    class Meta:
        model = Customer
        fields = [
            "id",
            "email",
            "name",
            "tax_number",
            "standard_tax_rate",
            "digital_tax_rate",
            "billing_type",
            "type",
            "reference",
            "external_reference",
            "address",
            "locale",
            "brand",
            "invoice_format",
            "marketing_opt_in",
            "metadata",
            "status",
            "currency",
            "default_namespace",
            "namespace",
            "created_at",
        ]
        read_only_fields = ["id", "status", "default_namespace", "created_at"]
        # The uniqueness of the email is checked (case-insensitively) by the service.
        validators = []

    def get_fields(self):
        fields = super().get_fields()
        for name in self.NULL_MEANS_DEFAULT:
            fields[name].allow_null = True
        if self.instance is not None:
            fields.pop("namespace")
        return fields

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        for name in self.NULL_MEANS_DEFAULT:
            if name in values and values[name] is None:
                values[name] = _null_to_default(name)
        if values.get("currency") is None and "currency" in values:
            values["currency"] = ""
        if "email" in values:
            values["email"] = values["email"].strip()
        return values

    def to_representation(self, instance):
        return customer_data(instance)


_NOT_ANNOTATED = object()


def customer_data(instance) -> dict:
    """A customer as the API shows it (the serializer's output; the hot detail path's too)."""
    # Written out by hand: a page of 100 customers through DRF's field-by-field rendering
    # cost ~10 ms; this is the same answer (tests compare it with the schema) in a tenth.
    namespace_name = getattr(instance, "default_namespace_name", _NOT_ANNOTATED)
    if namespace_name is _NOT_ANNOTATED:
        namespace = instance.default_namespace
        namespace_name = namespace.name if namespace is not None else None
    return {
        "id": str(instance.id),
        "email": instance.email,
        "name": instance.name,
        "tax_number": instance.tax_number,
        "standard_tax_rate": decimal_text(instance.standard_tax_rate),
        "digital_tax_rate": decimal_text(instance.digital_tax_rate),
        "billing_type": instance.billing_type,
        "type": instance.type,
        "reference": instance.reference,
        "external_reference": instance.external_reference,
        "address": {
            "company_name": instance.company_name,
            "street_line_one": instance.street_line_one,
            "street_line_two": instance.street_line_two,
            "city": instance.city,
            "region": instance.region,
            "country": instance.country,
            "postcode": instance.postcode,
        },
        "locale": instance.locale,
        "brand": instance.brand,
        "invoice_format": instance.invoice_format,
        "marketing_opt_in": instance.marketing_opt_in,
        "metadata": instance.metadata,
        "status": instance.status,
        "currency": instance.currency or None,
        "default_namespace": namespace_name,
        # The hot detail path reads it already formatted (customers.selectors).
        "created_at": getattr(instance, "created_at_text", None)
        or timestamp_text(instance.created_at),
    }


class NamespaceSerializer(FastOutputMixin, serializers.ModelSerializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.none())
    labels = serializers.DictField(child=serializers.CharField(), required=False)

    class Meta:
        model = Namespace
        fields = ["id", "name", "customer", "description", "labels", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        if request is not None and request.auth is not None:
            fields["customer"].queryset = Customer.objects.for_tenant(request.auth.tenant)
        if self.instance is not None:
            fields["name"].read_only = True
            fields["customer"].read_only = True
        return fields
