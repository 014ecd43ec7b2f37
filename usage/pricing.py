"""Seed 002's `price` object of a metered subscription item (`PATCH /subscription-items/{id}`):
its serializer and the check that it carries what the item's calc rule needs."""

from decimal import Decimal

from rest_framework import serializers

from billing_project import billing_math

RULES = ("unit", "stepped", "staged", "commit", "overcommit", "post_invoice")
# What each rule reads from the price object (billing_math.calc_rule_amount / commit_in_advance).
REQUIRED = {
    "unit": ("money_value",),
    "post_invoice": ("money_value",),
    "stepped": ("steps",),
    "staged": ("steps",),
    "commit": ("default_value", "money_value"),
    "overcommit": ("default_value", "money_value"),
}


class DecimalStringInput(serializers.CharField):
    """A non-negative decimal given as a string (or a JSON integer), kept as its string."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str | int):
            raise serializers.ValidationError("must be a decimal string")
        try:
            value = Decimal(str(data).strip())
        except ArithmeticError:
            raise serializers.ValidationError("must be a decimal string") from None
        if not value.is_finite() or value < 0:
            raise serializers.ValidationError("must be a non-negative decimal string")
        return str(value)


class PricingStepSerializer(serializers.Serializer):
    threshold = DecimalStringInput()
    money_value = DecimalStringInput()


class ItemPricingSerializer(serializers.Serializer):
    """`{unit, default_value, type, money_value, steps: [{threshold, money_value}]}`; money values
    are minor units and may be fractions of one."""

    unit = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    default_value = DecimalStringInput(required=False, allow_null=True)
    type = serializers.CharField(required=False, allow_blank=True, max_length=64)
    money_value = DecimalStringInput(required=False, allow_null=True)
    steps = PricingStepSerializer(many=True, required=False, allow_empty=True)

    def validate_steps(self, steps):
        if steps:
            try:
                billing_math.parse_steps(steps)
            except (ValueError, TypeError) as exc:
                raise serializers.ValidationError(str(exc)) from None
        return steps


def item_pricing_errors(calc_rule_type: str | None, pricing: dict | None) -> dict[str, list[str]]:
    """Errors (keyed `price.<field>`) when `pricing` lacks what `calc_rule_type` needs."""
    if not calc_rule_type:
        return {}
    pricing = pricing or {}
    errors = {}
    for name in REQUIRED[calc_rule_type]:
        if pricing.get(name) in (None, "", []):
            errors[f"price.{name}"] = [
                f"price.{name} should not be empty for calc_rule_type {calc_rule_type}"
            ]
    return errors


def item_pricing_check(item, values: dict) -> None:
    """For the PATCH view: the item's rule and price after the change must fit together, and a
    calc rule only applies to a metered item."""
    rule = values.get("calc_rule_type", item.calc_rule_type)
    pricing = values.get("pricing", item.pricing)
    if ("calc_rule_type" in values or "pricing" in values) and rule and item.item_type != "usage":
        raise serializers.ValidationError(
            {"calc_rule_type": ["calc_rule_type applies to metered (usage) items only"]}
        )
    errors = item_pricing_errors(rule, pricing)
    if errors:
        raise serializers.ValidationError(errors)
