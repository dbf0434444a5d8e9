"""GET /, /health and /stats on a real Redis."""

from __future__ import annotations

import time

import requests

from app import __version__
from harness.processes import wait_until


def test_root_names_the_service(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.json == {
        "service": "orchestrator-api",
        "version": __version__,
        "status": "running",
    }


def test_health_reports_redis_and_counters(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "healthy" and body["redis"] == "connected"
    assert body["queue_stats"] == {
        "pending": 0,
        "queued": 0,
        "in_progress": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "awaiting_approval": 0,
        "scheduled": 0,
        "blocked": 0,
    }


def test_stats_shape_and_live_timestamp(client, keys):
    client.post("/tasks", json={"type": "bugfix", "priority": "P3"}, headers=keys["agent"])
    first = client.get("/stats").json
    time.sleep(0.01)
    second = client.get("/stats").json
    assert first["queue"]["pending"] == 1
    assert first["tasks"]["assigned"] == 1
    assert first["agents"] == {"dev_agent": 1}
    assert first["approvals"] == {"pending": 0}
    assert second["timestamp"] > first["timestamp"]


def test_live_health_under_gunicorn(live_server):
    server = live_server(workers=2)
    response = requests.get(f"{server.url}/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert response.headers["Content-Type"] == "application/json"


def test_a_read_with_no_write_since_the_last_is_answered_from_the_kept_figures(
    make_app, own_redis, keys
):
    from app.services import services

    app = make_app(redis_url=own_redis.url)
    client = app.test_client()
    create = {"type": "bugfix", "priority": "P3"}
    assert client.post("/tasks", json=create, headers=keys["agent"]).status_code == 201
    probe = own_redis.client()
    live = ("timestamp", "oldest_waiting_seconds", "oldest_approval_seconds", "memory")
    with app.app_context():
        first = services().stats.read()
        probe.config_resetstat()
        kept = services().stats.read()
        calls = {
            k.removeprefix("cmdstat_"): v["calls"] for k, v in probe.info("commandstats").items()
        }
        assert client.post("/tasks", json=create, headers=keys["agent"]).status_code == 201
        after_a_write = services().stats.read()
    # The same figures with a live clock and memory, from INFO and one GET: no recount.
    assert {k: v for k, v in kept.items() if k not in live} == {
        k: v for k, v in first.items() if k not in live
    }
    assert kept["timestamp"] >= first["timestamp"] and kept["memory"]["used_bytes"] > 0
    assert first["queue"]["queued"] == 1 and after_a_write["queue"]["queued"] == 2
    calls.pop("config|resetstat", None)
    assert calls == {"evalsha": 1, "time": 1, "info": 1, "get": 1}


def unrelated_writes(server, count: int, key):
    """`count` writes the stats do not read (to key(i)); a client of `server`."""
    probe = server.client()
    with probe.pipeline(transaction=False) as pipe:
        for i in range(count):
            pipe.set(key(i), i)
        pipe.execute()
    return probe


def create_then_count_back_to(client, probe, keys, kept: int) -> None:
    """Create a task, then pad unrelated writes until rdb_changes_since_last_save is back
    at `kept`, the value the stats snapshot was stored with."""
    create = {"type": "bugfix", "priority": "P3"}
    assert client.post("/tasks", json=create, headers=keys["agent"]).status_code == 201
    made = probe.info("persistence")["rdb_changes_since_last_save"]
    assert 0 < made < kept
    for i in range(kept - made):
        probe.set("elsewhere:pad", i)
    assert probe.info("persistence")["rdb_changes_since_last_save"] == kept


def test_a_save_that_brings_the_change_counter_back_to_a_kept_value_is_not_answered_stale(
    make_app, own_redis, keys
):
    # rdb_changes_since_last_save restarts at 0 after a save (and a Redis restart), so it
    # can reach the value kept with the figures again after writes they do not show.
    client = make_app(redis_url=own_redis.url).test_client()
    probe = unrelated_writes(own_redis, 300, key=lambda i: f"elsewhere:{i}")
    assert client.get("/health").json["queue_stats"]["queued"] == 0
    kept = probe.info("persistence")["rdb_changes_since_last_save"]
    probe.save()
    create_then_count_back_to(client, probe, keys, kept)
    assert client.get("/health").json["queue_stats"]["queued"] == 1


def test_a_restart_that_brings_the_change_counter_back_to_a_kept_value_is_not_answered_stale(
    make_app, own_redis, keys
):
    # A new process counts from what it replays (none of its AOF's rewritten base).
    client = make_app(redis_url=own_redis.url).test_client()
    # One key written again and again: the rewritten AOF replays it as one write.
    probe = unrelated_writes(own_redis, 300, key=lambda _i: "elsewhere")
    probe.bgrewriteaof()
    wait_until(lambda: not probe.info("persistence")["aof_rewrite_in_progress"])
    assert client.get("/health").json["queue_stats"]["queued"] == 0
    kept = probe.info("persistence")["rdb_changes_since_last_save"]
    own_redis.stop()
    own_redis.start()
    create_then_count_back_to(client, probe, keys, kept)
    assert client.get("/health").json["queue_stats"]["queued"] == 1
