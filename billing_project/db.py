"""Database helpers for the hot paths."""

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg.pq import Format

# psycopg's C loader of timestamptz text. Django registers a Python subclass of the pure-Python
# loader on its connections (to pin the tzinfo); a statement that reads many timestamps can ask
# for this one instead: the same instants, in the session's time zone (UTC on Django's
# connections), at a tenth of the cost.
_C_TIMESTAMPTZ = psycopg.adapters.get_loader(psycopg.adapters.types["timestamptz"].oid, Format.TEXT)


def prepared_cursor(*, c_timestamps: bool = False):
    """A Django cursor over a server-side-binding psycopg cursor (PostgreSQL only): psycopg
    prepares a statement on the server after its first uses on a connection (the
    `prepare_threshold` option, DB_PREPARE_THRESHOLD), so a hot statement is parsed and planned
    once per connection instead of on every request; Django's cursors bind client-side and are
    never prepared. Django's wrappers stay (query logging and counting, execute wrappers)."""
    wrapper = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` looks the alias up
    wrapper.ensure_connection()
    cursor = psycopg.Cursor(wrapper.connection)
    if c_timestamps:
        cursor.adapters.register_loader("timestamptz", _C_TIMESTAMPTZ)
    return wrapper._prepare_cursor(cursor)
