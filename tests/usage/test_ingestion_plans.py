"""The ingestion statements are prepared, so PostgreSQL soon runs them with a generic plan built
from whatever statistics it has. Those are often stale on a busy events table (a table analyzed
while it was small, or autovacuum turned off, as on our CI machine). The references statement
must still probe the event-id index per id asked: with the probe written as a plain
`event_id = ANY(...)`, the generic plan read every event of the tenant on every request, so
ingestion slowed down as the table grew (bench/ingest.py's batch figure fell from 15,000 to
7,400 events/s within 24 seconds of load)."""

import json

import pytest
from django.db import connection

from tests.usage.factories import event
from tests.utils import postgresql_only
from usage import services

pytestmark = [pytest.mark.django_db, postgresql_only]

PARAMETERS = ("tenant", "codes", "subscriptions", "namespaces", "customers", "references", "stored")
TYPES = ("uuid", "text[]", "uuid[]", "text[]", "uuid[]", "text[]", "text[]")


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _generic_plan(tenant, subscription, stored: list[str]) -> list[dict]:
    """The executed generic plan's nodes of the references statement."""
    sql = services._REFERENCES_SQL
    for position, name in enumerate(PARAMETERS, start=1):
        sql = sql.replace(f"%({name})s", f"${position}")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE references_probe({', '.join(TYPES)}) AS {sql}")
        try:
            cursor.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE references_probe"
                "(%s, %s, %s, %s, %s, %s, %s)",
                [tenant.pk, ["api_calls"], [subscription.pk], [], [], [], stored],
            )
            document = cursor.fetchone()[0]
        finally:
            cursor.execute("DEALLOCATE references_probe")
    if isinstance(document, str):
        document = json.loads(document)
    return list(_nodes(document[0]["Plan"]))


def test_stored_ids_are_probed_by_index_whatever_the_statistics(tenant, subscription, calls):
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE usage_usageevent")  # statistics of an empty table
    services.events_ingest(
        tenant=tenant,
        events=[event(subscription, "api_calls", 1, event_id=f"old-{n}") for n in range(400)],
        batch=True,
    )

    nodes = _generic_plan(tenant, subscription, ["old-7", "new-1"])

    on_events = [node for node in nodes if node.get("Relation Name") == "usage_usageevent"]
    assert on_events, "the statement reads usage_usageevent"
    for node in on_events:
        # One index probe per id asked: never a scan of the tenant's other events.
        assert "event_id" in node.get("Index Cond", ""), node
        assert node["Actual Rows"] <= 1
        assert node.get("Rows Removed by Filter", 0) == 0
        assert node.get("Rows Removed by Index Recheck", 0) == 0


def test_the_probe_still_finds_what_is_stored(tenant, subscription, calls):
    services.events_ingest(
        tenant=tenant,
        events=[event(subscription, "api_calls", 1, event_id=f"kept-{n}") for n in range(3)],
        batch=True,
    )

    result = services.events_ingest(
        tenant=tenant, events=[event(subscription, "api_calls", 1, event_id="kept-1")], batch=False
    )

    assert (result.accepted, result.duplicates) == (0, 1)
