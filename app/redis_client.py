"""The Redis client factory: the one place that turns REDIS_URL into a client and pool."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script
from redis.connection import Encoder
from redis.retry import Retry
from redis.sentinel import Sentinel

from app import redis_urls
from app.config import Settings

# app.extensions key of where the app's Redis is (redis_location), for log lines.
REDIS_LOCATION = "orchestrator.redis_location"


def connection_options(settings: Settings) -> dict:
    """Timeouts and retries that keep every Redis failure within HEALTH_CHECK_TIMEOUT + 1 s.

    A refused connection is retried twice with a short backoff (a restart or fail-over);
    a timeout is not retried, so a frozen server costs one timeout, not three.
    """
    timeout = settings.health_check_timeout
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": max(0.1, min(timeout, 3.0) / 3),
        "retry": Retry(
            ExponentialBackoff(cap=0.2, base=0.05), 2, supported_errors=(redis.ConnectionError,)
        ),
        "retry_on_timeout": False,
        "health_check_interval": 30,
        "max_connections": 64,
    }


def tls_options(settings: Settings) -> dict:
    """Certificate checks for a TLS connection (REDIS_TLS_VERIFY)."""
    return {
        "ssl_cert_reqs": "required" if settings.redis_tls_verify else "none",
        "ssl_check_hostname": settings.redis_tls_verify,
    }


class LazyCluster:
    """A RedisCluster built on first use, then every call goes to it."""

    # RedisCluster's constructor reads the slot map: a cluster that is down when a worker
    # starts must cost a 503 per request, not the worker (and /metrics, /docs with it).
    def __init__(self, **options):
        self._options = options
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    def cluster(self) -> RedisCluster:
        """The cluster client, built now if it is not yet (RedisClusterException if down)."""
        with self._lock:
            if self._client is None:
                self._client = RedisCluster(**self._options)
            return self._client

    def get_encoder(self) -> Encoder:
        """What Script hashes its text with, without reaching the cluster."""
        return Encoder("utf-8", "strict", decode_responses=True)

    def register_script(self, script: str) -> Script:
        """A script whose calls go through this client."""
        return Script(self, script)

    def __getattr__(self, name: str):
        return getattr(self.cluster(), name)


def make_redis(settings: Settings) -> redis.Redis | LazyCluster:
    """The one Redis client of this process, for whichever topology REDIS_URL names.

    `memory://` gives an in-process fakeredis; sentinel and cluster clients find the
    current primary themselves, so a fail-over needs no restart.
    """
    target = redis_urls.parse(settings.redis_url)
    if target.topology == "memory":
        import fakeredis

        return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    options = connection_options(settings)
    if target.tls:
        options |= {"ssl": True, **tls_options(settings)}
    if target.topology == "sentinel":
        return _sentinel_primary(target, options)
    if target.topology == "cluster":
        return _cluster(target, options)
    options.pop("ssl", None)  # redis-py reads TLS from the rediss:// scheme itself
    pool = redis.ConnectionPool.from_url(target.url, decode_responses=True, **options)
    return redis.Redis(connection_pool=pool)


def _sentinel_primary(target: redis_urls.RedisTarget, options: dict) -> redis.Redis:
    # Sentinels are asked with the same timeouts and retries (redis-py's default retry
    # would spend about 12 s on dead sentinels) but their own credentials; the primary's
    # pool re-asks them on every reconnect, and a demoted primary's READONLY reply counts
    # as a lost connection.
    shared = (
        *("socket_timeout", "socket_connect_timeout", "retry"),
        *("ssl", "ssl_cert_reqs", "ssl_check_hostname"),
    )
    sentinel_options = {key: options[key] for key in shared if key in options}
    if target.sentinel_password:
        sentinel_options["password"] = target.sentinel_password
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_options)
    return sentinel.master_for(
        target.service,
        db=target.db,
        username=target.username,
        password=target.password,
        decode_responses=True,
        **options,
    )


def _cluster(target: redis_urls.RedisTarget, options: dict) -> LazyCluster:
    # The cluster client keeps a pool per node; a moved slot or a failed-over primary
    # makes it re-read the slot map, within the same retry policy as the other clients.
    options.pop("health_check_interval")
    options.pop("retry_on_timeout")  # redis-py's cluster client decides that itself
    return LazyCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        decode_responses=True,
        **options,
    )


def redis_location(url: str) -> str:
    """Where REDIS_URL points, for log lines: host:port (every node), the socket path, or
    memory://; never a password."""
    try:
        target = redis_urls.parse(url)
    except ValueError:
        return "an unreadable REDIS_URL"
    if target.topology == "memory":
        return "memory://"
    if target.nodes:
        return ",".join(f"{host}:{port}" for host, port in target.nodes)
    parsed = urlsplit(url)
    if parsed.scheme == "unix":
        return parsed.path
    return f"{parsed.hostname or 'localhost'}:{parsed.port or 6379}"


class Breaker:
    """How fast this process reports a Redis failure, not what any request returns.

    After Redis failed, endpoints that do not need it (docs, /metrics, /, /auth/token)
    skip their Redis calls for `seconds` instead of each waiting HEALTH_CHECK_TIMEOUT on
    a hung server: they answer without a rate limit and /metrics says redis_up 0. Data
    endpoints never consult it.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.open_until = 0.0

    def trip(self) -> None:
        """Redis just failed."""
        self.open_until = time.monotonic() + self.seconds

    def is_open(self) -> bool:
        """Whether Redis failed within the last `seconds`."""
        return time.monotonic() < self.open_until
