"""Bulk writes for batch paths (the billing run, webhook events), below the ORM's per-object cost.

`fast_insert` inserts model instances with PostgreSQL's COPY (or, with `ignore_conflicts`, one
`INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING` with server-side bound arrays);
elsewhere it falls back to `bulk_create`. `rows_update` updates rows by primary key in one
statement per chunk (`UPDATE ... FROM unnest(...)` on PostgreSQL, `bulk_update` elsewhere).

Both skip what bulk_create / bulk_update do per object and per value in Python (field
preparation, client-side quoting of every parameter, CASE expressions): values are taken as the
instances hold them, so they must already be of the field's Python type (what the ORM would hand
back). Neither sends signals, like their ORM counterparts. Database errors surface as Django's
(IntegrityError for a unique violation), so callers' handling is unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
from operator import attrgetter

import psycopg
from django.db import connections, models, router

# Field classes whose Python value psycopg dumps exactly as the ORM would store it.
_PLAIN_FIELDS = (
    models.CharField,
    models.TextField,
    models.UUIDField,
    models.IntegerField,  # also Big/Small/Positive* integer fields
    models.BooleanField,
    models.DecimalField,
    models.DateField,  # also DateTimeField (aware values; naive ones take the slow path)
)


def _db_for_write(model) -> str:
    return router.db_for_write(model)


def _column_values(field, connection):
    """A function turning an instance's attribute value into what COPY / unnest should send."""
    if isinstance(field, models.JSONField):
        encoder = field.encoder
        # Rows often share one value (an invoice's biller address): encode each object once.
        # Keyed by identity, which holds while the caller's objects are alive during the insert.
        texts: dict = {}

        def to_json(value):
            if value is None:
                return None
            text = texts.get(id(value))
            if text is None:
                text = texts[id(value)] = json.dumps(value, cls=encoder)
            return text

        return to_json
    if isinstance(field, models.DateTimeField):

        def to_datetime(value):
            if isinstance(value, dt.datetime) and value.tzinfo is None:
                return field.get_db_prep_save(value, connection)
            return value

        return to_datetime
    target = field.target_field if field.is_relation else field
    if isinstance(target, _PLAIN_FIELDS) and not isinstance(target, models.DateTimeField):
        return None
    return lambda value: field.get_db_prep_save(value, connection)


def _insert_fields(model) -> list:
    return [f for f in model._meta.concrete_fields if not f.generated]


def _prepare_instances(model, objs: list, fields: list) -> None:
    """What bulk_create does before inserting that matters here: defaults already live on the
    instances; related objects saved after assignment lend their primary key; auto_now(_add)
    fields are stamped."""
    for field in fields:
        if field.is_relation and field.many_to_one:
            for obj in objs:
                if getattr(obj, field.attname) is None and field.is_cached(obj):
                    related = field.get_cached_value(obj)
                    if related is not None:
                        setattr(obj, field.attname, related.pk)
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            for obj in objs:
                field.pre_save(obj, add=True)


def _rows(objs: list, fields: list, connection, prepared: dict | None = None) -> list:
    getter = attrgetter(*(f.attname for f in fields))
    rows = [(getter(obj),) for obj in objs] if len(fields) == 1 else list(map(getter, objs))
    prepared = prepared or {}
    converters = [
        (i, None if f.attname in prepared else _column_values(f, connection))
        for i, f in enumerate(fields)
    ]
    overrides = [(i, prepared[f.attname]) for i, f in enumerate(fields) if f.attname in prepared]
    converters = [(i, fn) for i, fn in converters if fn is not None]
    if converters or overrides:
        converted = []
        for n, row in enumerate(rows):
            row = list(row)
            for i, fn in converters:
                row[i] = fn(row[i])
            for i, values in overrides:
                row[i] = values[n]
            converted.append(row)
        rows = converted
    return rows


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def fast_insert(
    model,
    objs,
    *,
    ignore_conflicts: bool = False,
    using: str | None = None,
    prepared: dict | None = None,
) -> list:
    """Insert `objs` (instances of `model`, primary keys set in Python) in bulk, in the caller's
    transaction. Returns `objs`, marked as saved. `prepared` maps a field's attname to the
    values already in database form for each object, in order (a JSON field's encoded text),
    used instead of encoding the attribute again on PostgreSQL."""
    objs = list(objs)
    if not objs:
        return objs
    using = using or _db_for_write(model)
    connection = connections[using]
    if connection.vendor != "postgresql" or any(obj.pk is None for obj in objs):
        return model._default_manager.using(using).bulk_create(
            objs, ignore_conflicts=ignore_conflicts
        )
    fields = _insert_fields(model)
    _prepare_instances(model, objs, fields)
    rows = _rows(objs, fields, connection, prepared)
    table = _quote(model._meta.db_table)
    columns = ", ".join(_quote(f.column) for f in fields)
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        if ignore_conflicts:
            # COPY cannot skip conflicts: unnest one server-side bound array per column.
            arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
            with psycopg.Cursor(connection.connection) as cursor:
                cursor.execute(
                    f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}) "
                    "ON CONFLICT DO NOTHING",
                    [list(column) for column in zip(*rows, strict=True)],
                )
        else:
            with (
                psycopg.Cursor(connection.connection) as cursor,
                cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
    for obj in objs:
        state = obj._state
        state.adding, state.db = False, using
    return objs


def rows_update(model, objects: list, fields: list[str], *, batch_size: int = 5000) -> None:
    """Write `fields` of each instance to its row, matched by primary key."""
    if not objects:
        return
    using = _db_for_write(model)
    connection = connections[using]
    if connection.vendor != "postgresql":
        model._default_manager.using(using).bulk_update(objects, fields, batch_size=1000)
        return
    meta = model._meta
    pk = meta.pk
    columns = [pk, *(meta.get_field(name) for name in fields)]
    arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in columns)
    assignments = ", ".join(f"{_quote(f.column)} = v.{_quote(f.column)}" for f in columns[1:])
    names = ", ".join(_quote(f.column) for f in columns)
    sql = (
        f"UPDATE {_quote(meta.db_table)} AS t SET {assignments} "
        f"FROM unnest({arrays}) AS v({names}) WHERE t.{_quote(pk.column)} = v.{_quote(pk.column)}"
    )
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    for start in range(0, len(objects), batch_size):
        chunk = objects[start : start + batch_size]
        rows = _rows(chunk, columns, connection)
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])
