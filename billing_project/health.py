"""`GET /healthz`: 200 when the database, the cache and the Celery broker answer, else 503
naming what is down. No authentication, no details beyond ok/down."""

import logging
import uuid

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from billing_project.celery import app as celery_app

logger = logging.getLogger(__name__)


def _database() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0] == 1


def _cache() -> bool:
    probe_key, probe_value = "healthz:probe", uuid.uuid4().hex
    cache.set(probe_key, probe_value, timeout=10)
    return cache.get(probe_key) == probe_value


def _broker() -> bool:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return True


CHECKS = {"database": _database, "cache": _cache, "broker": _broker}


def healthz(request):
    body = {"status": "ok"}
    for name, check in CHECKS.items():
        try:
            body[name] = "ok" if check() else "down"
        except Exception:
            logger.warning("Health check %s failed", name, exc_info=True)
            body[name] = "down"
    down = [name for name in CHECKS if body[name] != "ok"]
    if down:
        body["status"] = "down"
        body["down"] = down
    return JsonResponse(body, status=503 if down else 200)
