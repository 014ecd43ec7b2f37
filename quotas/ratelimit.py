"""Token buckets for quota `api_limits`, in the cache: one atomic Lua script on Redis (so any
number of web processes share the buckets), a lock-guarded read-modify-write on the local cache
of the embedded default (one process). A batch takes from all its buckets or from none."""

from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

# KEYS: the buckets; ARGV[1]: now (the caller's clock, seconds); then per bucket: rate (tokens per
# second), burst (capacity), tokens wanted. Answers {0, 0} when every bucket had enough (and took
# them), else {index of the first short bucket, milliseconds until it has enough}.
_TAKE_SCRIPT = """
local now = tonumber(ARGV[1])
local levels = {}
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[i * 3 - 1])
  local burst = tonumber(ARGV[i * 3])
  local wanted = tonumber(ARGV[i * 3 + 1])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  -- Web processes' clocks differ slightly: time never runs backwards for a bucket.
  local t = math.max(now, at)
  tokens = math.min(burst, tokens + (t - at) * rate)
  if tokens < wanted then
    return {i, math.ceil((wanted - tokens) / rate * 1000)}
  end
  levels[i] = {tokens - wanted, t, math.ceil(burst / rate * 1000) + 1000}
end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'tokens', tostring(levels[i][1]), 'at', tostring(levels[i][2]))
  redis.call('PEXPIRE', key, levels[i][3])
end
return {0, 0}
"""

_local_lock = threading.Lock()


@dataclass(frozen=True)
class Take:
    key: str
    rate_per_second: float
    burst: int
    tokens: int


@dataclass(frozen=True)
class BucketAnswer:
    taken: bool
    refused: Take | None = None
    wait_seconds: float = 0.0


def _redis_client():
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    return backend._cache.get_client(write=True)


@functools.cache
def _take_script(client):
    """The script registered once per client: EVALSHA (loaded again if Redis lost it), not the
    script's text on every batch."""
    return client.register_script(_TAKE_SCRIPT)


def buckets_take(takes: list[Take]) -> BucketAnswer:
    """Take each `tokens` from its bucket (refilled at `rate_per_second` up to `burst`), all or
    none: a refused batch spends nothing."""
    if not takes:
        return BucketAnswer(True)
    now = time.time()
    client = _redis_client()
    if client is not None:
        arguments = [repr(now)]
        for take in takes:
            arguments += [repr(float(take.rate_per_second)), take.burst, take.tokens]
        make_key = caches["default"].make_key
        short, wait_ms = _take_script(client)(
            keys=[make_key(take.key) for take in takes], args=arguments
        )
        if short:
            return BucketAnswer(False, takes[int(short) - 1], int(wait_ms) / 1000)
        return BucketAnswer(True)
    with _local_lock:
        levels = []
        for take in takes:
            level, at = cache.get(take.key) or (float(take.burst), now)
            moment = max(now, at)
            level = min(float(take.burst), level + (moment - at) * take.rate_per_second)
            if level < take.tokens:
                return BucketAnswer(False, take, (take.tokens - level) / take.rate_per_second)
            levels.append((take, level - take.tokens, moment))
        for take, level, moment in levels:
            timeout = math.ceil(take.burst / take.rate_per_second) + 1
            cache.set(take.key, (level, moment), timeout=timeout)
        return BucketAnswer(True)
