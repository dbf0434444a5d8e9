"""REDIS_URL topologies read once: which nodes, service, database and TLS each URL names."""

from __future__ import annotations

import time

import pytest
from redis.cluster import RedisCluster

from app import redis_urls
from app.config import Settings
from app.redis_client import make_redis
from harness import RedisServer, free_port
from tests.conftest import base_env
from tests.helpers import redis_keys


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


def test_migrate_keys_moves_the_unbraced_layout_under_the_hash_tag(make_app, redis_server, api):
    app = make_app()
    keys = redis_keys(app)
    client = redis_server.client()
    old = f"{keys.prefix}:task:legacy"
    client.hset(old, mapping={"task_id": "legacy"})
    client.set(f"{keys.prefix}:seq", 41)
    result = app.test_cli_runner().invoke(args=["migrate-keys"])
    assert result.exit_code == 0 and "renamed 2 key(s)" in result.output
    assert client.exists(old) == 0
    assert client.hget(keys.task("legacy"), "task_id") == "legacy"
    created = api.using(app.test_client()).create()
    assert client.hget(keys.task(created["task_id"]), "status") == "assigned"
    assert client.get(keys.name("seq")) == "42"  # the sequence carries on where it was


@pytest.fixture
def replica(tmp_path):
    """A read-only replica of a primary of its own: what a demoted primary answers."""
    with RedisServer(tmp_path / "primary") as primary:
        options = ("--replicaof", "127.0.0.1", str(primary.port))
        with RedisServer(tmp_path / "replica", options=options) as server:
            yield server


def test_a_read_only_replica_answers_503_not_500(make_app, keys, replica):
    client = make_app(redis_url=replica.url).test_client()
    response = client.post("/tasks", json={"type": "bugfix"}, headers=keys["agent"])
    assert response.status_code == 503, response.json
    assert response.json["detail"] == "Redis unavailable"


def test_no_sentinel_answers_503_not_500_within_the_bound(make_app, keys):
    url = f"redis+sentinel://127.0.0.1:{free_port()}/mymaster"
    client = make_app(redis_url=url, HEALTH_CHECK_TIMEOUT="0.5").test_client()
    started = time.monotonic()
    assert client.get("/tasks", headers=keys["user"]).status_code == 503
    assert time.monotonic() - started <= 0.5 + 1.0  # HEALTH_CHECK_TIMEOUT + 1 s, retries included
    assert client.get("/health").json["redis"] == "disconnected"


def test_a_cluster_down_at_start_is_503_and_the_app_still_starts(make_app, keys):
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    client = make_app(redis_url=url, HEALTH_CHECK_TIMEOUT="0.5").test_client()  # no raise
    response = client.post("/tasks", json={"type": "bugfix"}, headers=keys["agent"])
    assert response.status_code == 503 and response.json["detail"] == "Redis unavailable"
    assert client.get("/health").status_code == 503


@pytest.mark.parametrize("verify", ["true", "false"])
def test_rediss_sentinel_speaks_tls_to_sentinels_and_primary(verify):
    env = base_env("rediss+sentinel://127.0.0.1:1/mymaster", REDIS_TLS_VERIFY=verify)
    client = make_redis(Settings.from_env(env))
    primary = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class.__name__ == "SentinelManagedSSLConnection"
    assert primary["ssl_cert_reqs"] == ("required" if verify == "true" else "none")
    sentinel = client.connection_pool.sentinel_manager.sentinels[0].connection_pool
    assert sentinel.connection_kwargs["ssl_cert_reqs"] == primary["ssl_cert_reqs"]
    assert sentinel.connection_class.__name__ == "SSLConnection"


def test_rediss_cluster_options_ask_for_tls():
    client = make_redis(Settings.from_env(base_env("rediss+cluster://127.0.0.1:1")))
    assert client._options["ssl"] is True and client._options["ssl_cert_reqs"] == "required"
