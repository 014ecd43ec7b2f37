"""Reads for customers that the hot path (tenants.api.hot) serves without the ORM's compiler."""

from __future__ import annotations

import functools
import uuid
from types import SimpleNamespace

from django.db import connection
from rest_framework.settings import api_settings

from customers.models import Customer, Namespace
from tenants.api import hot

# What customers.api.serializers.customer_data does not render: not read on the hot path.
_NOT_RENDERED = frozenset({"tenant", "default_namespace", "updated_at"})
# `created_at` as the API writes it (tenants.api.fields.timestamp_text with the default
# DATETIME_FORMAT), formatted by PostgreSQL: Django's datetime loader is Python code.
_CREATED_AT_TEXT = """to_char(c."created_at" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


@functools.cache
def _customer_statement(datetime_format: str) -> tuple[str, list[str], list]:
    """The statement (written once from the model's fields), the attribute names and each
    column's ORM converters (a JSONField's decoding, for one)."""
    fields = [f for f in Customer._meta.concrete_fields if f.name not in _NOT_RENDERED]
    columns, names = [], []
    for field in fields:
        if field.name == "created_at" and datetime_format == "%Y-%m-%dT%H:%M:%SZ":
            columns.append(_CREATED_AT_TEXT)
            names.append("created_at_text")
        else:
            columns.append(f'c."{field.column}"')
            names.append(field.attname)
    sql = (
        f"SELECT {hot.KEY_COLUMNS}, n.name, {', '.join(columns)} FROM {hot.KEY_TABLE} "
        f"LEFT JOIN {Customer._meta.db_table} c ON c.tenant_id = k.tenant_id AND c.id = %s "
        f"LEFT JOIN {Namespace._meta.db_table} n ON n.id = c.default_namespace_id "
        "WHERE k.key_hash = %s"
    )
    converters = [
        (
            index,
            field,
            connection.ops.get_db_converters(field) + field.get_db_converters(connection),
        )
        for index, field in enumerate(fields)
        if names[index] == field.attname
    ]
    converters = [(index, field, found) for index, field, found in converters if found]
    return sql, names, converters


def customer_for_key(
    key_hash: str, customer_id: uuid.UUID
) -> tuple[hot.KeyRow | None, SimpleNamespace | None]:
    """The API key with hash `key_hash` and its tenant's customer `customer_id`, in one statement.
    The customer comes back as the attributes `customers.api.serializers.customer_data` reads
    (the model's fields, converted as the ORM would, and `default_namespace_name`): building
    a model instance cost more than the rest of the request's Python."""
    sql, attnames, converters = _customer_statement(api_settings.DATETIME_FORMAT)
    rows = hot.statement(sql, [customer_id, key_hash])
    if not rows:
        return None, None
    row = rows[0]
    key = hot.KeyRow(*row[: hot.KEY_COUNT])
    values = list(row[hot.KEY_COUNT + 1 :])
    if values[0] is None:
        return key, None
    for index, field, field_converters in converters:
        for convert in field_converters:
            values[index] = convert(values[index], field, connection)
    customer = SimpleNamespace(**dict(zip(attnames, values, strict=True)))
    customer.default_namespace_name = row[hot.KEY_COUNT]
    return key, customer
