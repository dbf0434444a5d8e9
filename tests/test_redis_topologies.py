"""REDIS_URL topologies read once: which nodes, service, database and TLS each URL names."""

from __future__ import annotations

import pytest
from redis.cluster import RedisCluster

from app import redis_urls
from app.config import Settings
from app.redis_client import make_redis
from tests.conftest import base_env


def test_sentinel_url_names_sentinels_service_db_and_credentials():
    target = redis_urls.parse(
        "rediss+sentinel://app:s%40cret@10.0.0.1:26379,[::1]:26380/cache/3?sentinel_password=x"
    )
    assert target.topology == "sentinel" and target.tls
    assert target.nodes == (("10.0.0.1", 26379), ("::1", 26380))
    assert (target.service, target.db) == ("cache", 3)
    assert (target.username, target.password, target.sentinel_password) == ("app", "s@cret", "x")


def test_cluster_url_names_its_seed_nodes():
    target = redis_urls.parse("redis+cluster://c1:7000,c2:7001/")
    assert target.topology == "cluster" and not target.tls
    assert target.nodes == (("c1", 7000), ("c2", 7001))


@pytest.mark.parametrize(
    ("url", "topology"),
    [("redis://h:1/0", "single"), ("unix:///tmp/r.sock", "single"), ("memory://", "memory")],
)
def test_plain_urls_are_left_to_redis_py(url, topology):
    assert redis_urls.parse(url).topology == topology


def test_sentinel_client_is_built_without_reaching_a_sentinel():
    # The factory must not need Redis at start-up: /metrics and /docs answer without it.
    env = base_env("redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster/1")
    client = make_redis(Settings.from_env(env))
    pool = client.connection_pool
    assert pool.service_name == "mymaster" and pool.connection_kwargs["db"] == 1
    assert not isinstance(client, RedisCluster)
