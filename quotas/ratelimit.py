"""Token buckets for quota `api_limits`, in the cache: one atomic Lua script on Redis (so any
number of web processes share a bucket), a lock-guarded read-modify-write on the local cache of
the embedded default (one process)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from django.core.cache import cache

# KEYS[1] the bucket; ARGV: rate (tokens per second), burst (capacity), tokens wanted.
# Answers {1, 0} when taken, {0, milliseconds until enough tokens} when refused.
_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
local wait_ms = 0
if tokens >= wanted then
  tokens = tokens - wanted
  taken = 1
else
  wait_ms = math.ceil((wanted - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {taken, wait_ms}
"""

_local_lock = threading.Lock()


@dataclass(frozen=True)
class BucketAnswer:
    taken: bool
    wait_seconds: float = 0.0


def _redis_client():
    backend = getattr(cache, "_cache", None)
    get_client = getattr(backend, "get_client", None)
    if get_client is None or type(cache).__name__ != "RedisCache":
        return None
    return get_client(write=True)


def bucket_take(key: str, *, rate_per_second: float, burst: int, tokens: int) -> BucketAnswer:
    """Take `tokens` from the bucket `key` (refilled at `rate_per_second` up to `burst`)."""
    client = _redis_client()
    if client is not None:
        taken, wait_ms = client.eval(
            _TAKE_SCRIPT,
            1,
            cache.make_and_validate_key(key),
            repr(float(rate_per_second)),
            burst,
            tokens,
        )
        return BucketAnswer(bool(taken), int(wait_ms) / 1000)
    with _local_lock:
        now = time.monotonic()
        level, at = cache.get(key) or (float(burst), now)
        level = min(float(burst), level + max(0.0, now - at) * rate_per_second)
        if level >= tokens:
            cache.set(key, (level - tokens, now), timeout=math.ceil(burst / rate_per_second) + 1)
            return BucketAnswer(True)
        cache.set(key, (level, now), timeout=math.ceil(burst / rate_per_second) + 1)
        return BucketAnswer(False, (tokens - level) / rate_per_second)
