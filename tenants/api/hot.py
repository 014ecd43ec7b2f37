"""Hot paths: the few endpoints that are called far more than the rest (a customer's detail, event
ingestion) answer their common case without DRF's dispatch and the ORM's query compiler, which
cost several times the database round trip they wrap.

A hot view wraps the DRF view of the same route and handles only the plain case: a valid API key
under its rate limit, no `Idempotency-Key`, plain JSON wanted. Anything else (no key, an unknown,
revoked or expired key, a limited key, an idempotent request, another method, content
negotiation) is handed to the DRF view unchanged, so every error, header and edge of the
conventions is still produced in one place. Tests compare the two paths answer for answer
(`HOT_PATHS = False` turns the hot paths off).

A hot read (`hot_retrieve`) makes one prepared statement, which reads the API key itself (by its
hash, from the table: revocation and expiry take effect at once) together with what the request
asks for, and one Redis exchange, sent before the statement and read after it, which counts the
request in django-ratelimit's own bucket (the cache key, window and expiry that
`django_ratelimit.core.get_usage` computes, so both paths count in one place). A hot read's
thread reserves a few counts per exchange (`RateCount`, RATE_LIMIT_RESERVATION), so most hot
reads make no Redis exchange at all. A hot write
(`hot_post`) needs the tenant before its first statement: the same Redis exchange also reads the
resolved key that DRF's authentication caches (revoking or saving a key clears it), and a key not
cached yet goes through DRF once. Round trips are what a request costs on small machines. A
request handed to DRF after it was counted (a limited or unusable key) is counted again there; it
is refused either way.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse
from django.urls import URLPattern
from django_ratelimit import core as ratelimit_core
from rest_framework.compat import LONG_SEPARATORS, SHORT_SEPARATORS
from rest_framework.exceptions import NotFound
from rest_framework.renderers import JSONRenderer

from billing_project.conf import billing_settings
from billing_project.db import prepared_cursor
from tenants.api.authentication import API_KEY_HEADER, API_KEY_QUERY_PARAM
from tenants.api.errors import error_payload, exception_handler
from tenants.api.throttling import SCOPE_SETTINGS, rate_limit_group, rate_limit_value
from tenants.models import ApiKey, api_key_cache_key, hash_api_key
from tenants.services import LAST_USED_RESOLUTION, api_key_record_use, api_key_touch

# Answers DRF would render exactly as we do: no Accept header, or one that takes plain JSON.
PLAIN_ACCEPTS = frozenset({"", "*/*", "application/json", "application/json, */*"})

_renderer = JSONRenderer()


def _render(data) -> bytes:
    """JSONRenderer().render(data) without its media-type and indent negotiation (the hot paths
    answer only requests that want plain JSON): the same options, the same escapes."""
    text = json.dumps(
        data,
        cls=_renderer.encoder_class,
        ensure_ascii=_renderer.ensure_ascii,
        allow_nan=not _renderer.strict,
        separators=SHORT_SEPARATORS if _renderer.compact else LONG_SEPARATORS,
    )
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


_TOUCH_SECONDS = LAST_USED_RESOLUTION.total_seconds()


@functools.cache
def _on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def enabled() -> bool:
    """Hot statements are written for PostgreSQL; SQLite (development) always takes DRF's path."""
    return getattr(settings, "HOT_PATHS", True) and _on_postgresql()


# {(scope, key hash, rate): (window, bucket)}: django-ratelimit's key changes once per window.
_buckets: dict[tuple, tuple[int, tuple[str, int, int]]] = {}


def _ratelimit_bucket(scope: str, key_hash: str) -> tuple[str, int, int]:
    """django-ratelimit's cache key for this key and scope now, with its limit and expiry
    (computed once per window: `_get_window` returns the window's last second)."""
    rate = getattr(billing_settings, SCOPE_SETTINGS[scope])
    limit, period = ratelimit_core._split_rate(rate)
    memo = (scope, key_hash, rate)
    now = int(time.time())
    known = _buckets.get(memo)
    if known is not None and known[0] - period < now <= known[0]:
        return known[1]
    value = rate_limit_value(key_hash)
    window = ratelimit_core._get_window(value, period)
    name = ratelimit_core._make_cache_key(
        rate_limit_group(scope), window, rate, value, ratelimit_core.ALL
    )
    if len(_buckets) > 10_000:
        _buckets.clear()
    _buckets[memo] = (window, (name, limit, period + ratelimit_core.EXPIRATION_FUDGE))
    return _buckets[memo][1]


def _resp(*arguments) -> bytes:
    """One Redis command in RESP (what redis-py's pack_command writes)."""
    parts = [b"*%d\r\n" % len(arguments)]
    for argument in arguments:
        data = argument if isinstance(argument, bytes) else str(argument).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


_threads = threading.local()


def _reservation_size(limit: int) -> int:
    """How many counts a thread takes at once: RATE_LIMIT_RESERVATION, at most 1 % of the
    limit (so 1, exact counting, for limits under 200 a window)."""
    return max(1, min(int(billing_settings.RATE_LIMIT_RESERVATION), limit // 100))


def _held_counts() -> dict:
    """This thread's reserved counts: {bucket: [next number, last number]}."""
    held = getattr(_threads, "held", None)
    if held is None:
        held = _threads.held = {}
    return held


def _redis_connection(backend):
    """This thread's own Redis connection for the hot paths, made from the cache's pool settings
    but kept out of the pool: taking and returning a pooled connection cost as much CPU as
    the exchange itself. A broken connection is dropped (`_redis_drop`) and remade."""
    connection = getattr(_threads, "redis", None)
    if connection is None or _threads.owner != (backend, os.getpid()):
        _redis_drop()
        pool = backend.get_client(write=True).connection_pool
        connection = pool.connection_class(**pool.connection_kwargs)
        _threads.redis, _threads.owner = connection, (backend, os.getpid())
    return connection


def _redis_drop() -> None:
    connection = getattr(_threads, "redis", None)
    _threads.redis = _threads.owner = None
    if connection is not None:
        connection.disconnect()


class RateCount:
    """One request counted in its key's django-ratelimit bucket: creating it sends the count,
    `within_limit` reads the answer (send, do the database work, then read).

    With `reserve`, counts are taken from the bucket a few at a time (`_reservation_size`) and
    handed out by this thread without a Redis exchange until they are used up: every request
    still gets a number of its own in the shared bucket, so the limit is never exceeded, but
    numbers another thread holds and does not use within the window make the 429 come at most
    that many requests early (at most 1 % of the limit, none below 200 a window)."""

    def __init__(
        self, key_hash: str, scope: str, *, read_cached_key: bool = False, reserve: bool = False
    ):
        self.bucket, self.limit, self.expiry = _ratelimit_bucket(scope, key_hash)
        self._connection = None
        self.count = None
        # With `read_cached_key`, the same exchange reads the resolved key that DRF's
        # authentication caches (tenants.selectors.api_key_for_clear_key), tenant included.
        self._key_name = api_key_cache_key(key_hash) if read_cached_key else None
        self.cached_key = None
        self._reserved = 1
        backend = self._backend = getattr(cache, "_cache", None)
        if backend is None or not hasattr(backend, "get_client"):
            return  # the in-process cache (development) is counted in within_limit
        if reserve and not read_cached_key:
            self._reserved = _reservation_size(self.limit)
            if self._reserved > 1:
                held = _held_counts()
                numbers = held.get(self.bucket)
                if numbers is not None and numbers[0] <= numbers[1]:
                    self.count = numbers[0]
                    numbers[0] += 1
                    return
        name = cache.make_key(self.bucket)
        commands = _resp("SET", name, 0, "NX", "EX", self.expiry)
        if self._reserved > 1:
            commands += _resp("INCRBY", name, self._reserved)
        else:
            commands += _resp("INCR", name)
        if self._key_name is not None:
            commands += _resp("GET", cache.make_key(self._key_name))
        self._connection = _redis_connection(backend)
        try:
            self._connection.send_packed_command([commands])
        except BaseException:
            self._release(broken=True)
            raise

    def _release(self, *, broken: bool = False) -> None:
        if self._connection is not None:
            self._connection = None
            if broken:
                _redis_drop()

    def within_limit(self) -> bool:
        if self.count is None:
            if self._connection is None:
                self.count = 1
                if not cache.add(self.bucket, 1, self.expiry):
                    try:
                        self.count = cache.incr(self.bucket)
                    except ValueError:  # expired between the two calls: a new window
                        cache.add(self.bucket, 1, self.expiry)
                if self._key_name is not None:
                    self.cached_key = cache.get(self._key_name)
            else:
                try:
                    self._connection.read_response()
                    last = int(self._connection.read_response())
                    self.count = last - self._reserved + 1
                    if self._reserved > 1:
                        held = _held_counts()
                        if len(held) > 100:
                            held.clear()
                        held[self.bucket] = [self.count + 1, last]
                    if self._key_name is not None:
                        entry = self._connection.read_response()
                        if entry is not None:
                            self.cached_key = self._backend._serializer.loads(entry)
                except BaseException:
                    self._release(broken=True)
                    raise
                self._release()
        return self.count <= self.limit

    def close(self) -> None:
        """Read the answer if nobody did (a connection goes back to the pool clean)."""
        if self._connection is not None:
            self.within_limit()


@dataclass(frozen=True, slots=True)
class KeyRow:
    """An API key as a hot statement reads it (`KEY_COLUMNS`, table alias `k`); its times are
    seconds since the epoch (a float loads in C, a datetime through Django's Python loader)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    revoked_at: float | None
    expires_at: float | None
    last_used_at: float | None

    def is_usable(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > time.time()

    def record_use(self) -> None:
        """api_key_touch's once-a-minute `last_used_at`, for a key read here."""
        if self.last_used_at is None or time.time() - self.last_used_at >= _TOUCH_SECONDS:
            api_key_record_use(key_id=self.id)


KEY_COLUMNS = ", ".join(
    ["k.id", "k.tenant_id"]
    + [
        f"extract(epoch FROM k.{name})::float8"
        for name in ("revoked_at", "expires_at", "last_used_at")
    ]
)
KEY_COUNT = 5
KEY_TABLE = f"{ApiKey._meta.db_table} k"


def request_key_hash(request) -> str | None:
    """The hash of the request's API key when the hot path can serve the request, else None."""
    if request.META.get("HTTP_IDEMPOTENCY_KEY") is not None:
        return None
    if request.META.get("HTTP_ACCEPT", "") not in PLAIN_ACCEPTS:
        return None
    clear_key = request.META.get(API_KEY_HEADER)
    if request.META.get("QUERY_STRING"):
        if "format" in request.GET:  # DRF's format override: its renderers decide
            return None
        if clear_key is None:
            clear_key = request.GET.get(API_KEY_QUERY_PARAM)
    if not clear_key or len(clear_key) > 200:
        return None
    return hash_api_key(clear_key)


def statement(sql: str, params: list) -> list[tuple]:
    """Run one prepared statement (billing_project.db.prepared_cursor); returns its rows."""
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def json_response(data, status: int = 200, allow: str | None = None) -> HttpResponse:
    """The response DRF's JSONRenderer and `Response` would give for `data`."""
    response = HttpResponse(_render(data), status=status, content_type="application/json")
    if allow is not None:
        response["Allow"] = allow
    return response


def not_found_response(allow: str | None = None) -> HttpResponse:
    """DRF's 404 for a missing object, in the error shape (tenants.api.errors.exception_handler)."""
    return json_response(error_payload(404, [str(NotFound.default_detail)]), 404, allow)


def allowed_methods(drf_view) -> str:
    """The `Allow` header DRF sends for a routed viewset view."""
    cls = drf_view.cls
    actions = set(getattr(drf_view, "actions", {}) or {})
    if "get" in actions:
        actions.add("head")
    actions.add("options")
    return ", ".join(m.upper() for m in cls.http_method_names if m in actions)


def hot_retrieve(drf_view, *, parse, fetch, render, scope: str = "default"):
    """Wrap a routed DRF detail view. A GET whose URL `parse` accepts is answered with
    `render(instance)` where `fetch(key_hash, parsed)` returns `(KeyRow | None, instance | None)`
    from one statement (a 404 as DRF gives it when the key is good but the instance missing);
    everything else goes to `drf_view`."""
    allow = allowed_methods(drf_view)

    @functools.wraps(drf_view)
    def view(request, *args, **kwargs):
        key_hash = request_key_hash(request) if request.method == "GET" and enabled() else None
        parsed = parse(**kwargs) if key_hash is not None else None
        if parsed is None:
            return drf_view(request, *args, **kwargs)
        count = RateCount(key_hash, scope, reserve=True)
        try:
            key, instance = fetch(key_hash, parsed)
        finally:
            count.close()
        if key is None or not count.within_limit() or not key.is_usable():
            return drf_view(request, *args, **kwargs)
        key.record_use()
        if instance is None:
            return not_found_response(allow)
        return json_response(render(instance), allow=allow)

    return view


def with_hot_views(patterns: list, wrappers: dict) -> list:
    """`patterns` (a router's URL patterns) with the views named in `wrappers` wrapped."""
    return [
        URLPattern(p.pattern, wrappers[p.name](p.callback), p.default_args, p.name)
        if getattr(p, "name", None) in wrappers
        else p
        for p in patterns
    ]


def cached_api_key(request, scope: str) -> ApiKey | None:
    """For hot writes, which need the tenant itself: the request's usable key from the cache DRF's
    authentication fills (revoking or saving a key clears it), counted against its rate limit,
    in one Redis exchange; None hands the request to DRF (a key not cached yet, for one)."""
    key_hash = request_key_hash(request)
    if key_hash is None:
        return None
    count = RateCount(key_hash, scope, read_cached_key=True)
    within_limit = count.within_limit()
    api_key = count.cached_key
    if api_key is None or not within_limit or not api_key.is_usable():
        return None
    api_key_touch(api_key=api_key)
    return api_key


def hot_post(drf_view, *, handle, scope: str):
    """Wrap a routed DRF view: a POST with a cached key is answered by `handle(tenant, request)`,
    which returns (status, data) or raises what a DRF view would (rendered by the API's one
    exception handler); everything else goes to `drf_view`."""
    allow = allowed_methods(drf_view)

    @functools.wraps(drf_view)
    def view(request, *args, **kwargs):
        api_key = None
        if request.method == "POST" and enabled():
            api_key = cached_api_key(request, scope)
        if api_key is None:
            return drf_view(request, *args, **kwargs)
        try:
            status, data = handle(api_key.tenant, request)
        except Exception as exc:  # what DRF's handle_exception would turn into an answer
            answer = exception_handler(exc, {})
            response = json_response(answer.data, answer.status_code, allow)
            for name, value in answer.headers.items():
                if name.lower() != "content-type":
                    response[name] = value
            return response
        return json_response(data, status, allow)

    return view
