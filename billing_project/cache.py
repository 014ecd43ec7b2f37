"""Django's Redis cache, with one `redis.Redis` client per connection pool instead of one per
operation: building a client costs more than the round trip it makes (its response-callback
table is rebuilt every time), and an API request makes several cache calls."""

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class PooledClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            # redis.Redis is thread-safe: it takes a connection from the pool per command.
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class PooledClientRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = PooledClientRedisCacheClient
