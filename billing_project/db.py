"""Database helpers for the hot paths."""

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections


def prepared_cursor():
    """A Django cursor over a server-side-binding psycopg cursor (PostgreSQL only): psycopg
    prepares a statement on the server after its first uses on a connection (the
    `prepare_threshold` option, DB_PREPARE_THRESHOLD), so a hot statement is parsed and planned
    once per connection instead of on every request; Django's cursors bind client-side and are
    never prepared. Django's wrappers stay (query logging and counting, execute wrappers)."""
    wrapper = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` looks the alias up
    wrapper.ensure_connection()
    return wrapper._prepare_cursor(psycopg.Cursor(wrapper.connection))
