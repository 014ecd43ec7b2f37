"""Serializer fields shared by every app: currency, country, decimal strings."""

import datetime as dt
from decimal import Decimal

from rest_framework import serializers
from rest_framework.settings import api_settings

from billing_project.billing_math import is_valid_currency
from tenants.countries import is_valid_country


class CurrencyField(serializers.CharField):
    """An upper-case ISO 4217 code; lower-case input is accepted and upper-cased."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 3)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data).upper()
        if value and not is_valid_currency(value):
            raise serializers.ValidationError(f"{value} is not an ISO 4217 currency code")
        return value


class CountryField(serializers.CharField):
    """An ISO 3166-1 alpha-2 country code, upper-cased."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 2)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data).upper()
        if value and not is_valid_country(value):
            raise serializers.ValidationError(f"{value} is not an ISO 3166-1 alpha-2 country code")
        return value


class DecimalStringField(serializers.DecimalField):
    """A decimal given as a JSON number or string, answered as its shortest string ("19.5")."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 20)
        kwargs.setdefault("decimal_places", 10)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return decimal_text(value)


def decimal_text(value) -> str | None:
    """A decimal as its shortest string: 19.5000 → "19.5", 15.0000 → "15"."""
    if value is None:
        return None
    normalized = Decimal(value).normalize()
    if normalized == normalized.to_integral():
        return str(normalized.quantize(Decimal(1)))
    return format(normalized, "f")


def timestamp_text(value) -> str | None:
    """An instant as the API writes it: RFC 3339 in UTC, to the second."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime(api_settings.DATETIME_FORMAT)
