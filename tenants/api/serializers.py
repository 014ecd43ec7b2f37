"""Serializer building blocks shared by every app."""

from collections import OrderedDict

from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject


class FastOutputMixin:
    """DRF builds a serializer's fields anew for every instance (a deep copy, and a mapping of every
    model field for a ModelSerializer), which costs more than the query on a detail view. For
    output, this reuses the fields of one template instance per serializer class: right for
    serializers whose output does not depend on the instance or the request context."""

    @classmethod
    def _output_fields(cls):
        fields = cls.__dict__.get("_cached_output_fields")
        if fields is None:
            fields = [field for field in cls().fields.values() if not field.write_only]
            cls._cached_output_fields = fields
        return fields

    def to_representation(self, instance):
        data = OrderedDict()
        for field in self._output_fields():
            try:
                attribute = field.get_attribute(instance)
            except SkipField:
                continue
            check_for_none = attribute.pk if isinstance(attribute, PKOnlyObject) else attribute
            data[field.field_name] = (
                None if check_for_none is None else field.to_representation(attribute)
            )
        return data
