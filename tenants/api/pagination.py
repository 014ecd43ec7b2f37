"""Keyset pagination (seed 001): `limit` 1..100 (default 10) and `last_key`, the id of the last
item of the previous page; ids are UUIDv7, so ordering by id is ordering by creation."""

import uuid

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


def parse_limit(raw, *, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    if raw in (None, ""):
        return default
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        limit = None
    if limit is None or not 1 <= limit <= maximum:
        raise ValidationError({"limit": [f"limit must be an integer from 1 to {maximum}"]})
    return limit


class KeysetPagination(BasePagination):
    ordering_field = "id"

    def paginate_queryset(self, queryset, request, view=None):
        limit = parse_limit(request.query_params.get("limit"))
        last_key = request.query_params.get("last_key")
        queryset = queryset.order_by(self.ordering_field)
        if last_key:
            try:
                last_key = uuid.UUID(last_key)
            except ValueError:
                raise ValidationError(
                    {"last_key": ["last_key must be the id of an item"]}
                ) from None
            queryset = queryset.filter(**{f"{self.ordering_field}__gt": last_key})
        items = list(queryset[: limit + 1])
        self.has_more = len(items) > limit
        items = items[:limit]
        self.last_key = str(items[-1].pk) if self.has_more else None
        return items

    def get_paginated_response(self, data):
        return Response({"data": data, "has_more": self.has_more, "last_key": self.last_key})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["data", "has_more", "last_key"],
            "properties": {
                "data": schema,
                "has_more": {"type": "boolean"},
                "last_key": {"type": "string", "nullable": True},
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": "How many items to return (1..100, default 10).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            },
            {
                "name": "last_key",
                "in": "query",
                "required": False,
                "description": "The id of the last item of the previous page.",
                "schema": {"type": "string"},
            },
        ]
