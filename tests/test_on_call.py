"""What on call sees: /health's ages and uptime, GET /agents, /metrics, the alert rules."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tests.helpers import redis_keys


def test_health_shows_uptime_queues_and_ages(api, client):
    api.create()
    api.create(type="deploy", priority="P2", payload={"service": "web"})  # gated
    time.sleep(0.05)
    health = client.get("/health").json
    assert health["uptime_seconds"] > 0
    assert health["queue_stats"]["queued"] == health["queue_stats"]["pending"] == 1
    dev = health["agents"]["dev_agent"]
    assert dev["queued"] == 1 and dev["oldest_waiting_seconds"] >= 0.05
    assert health["oldest_waiting_seconds"] == dev["oldest_waiting_seconds"]
    assert health["oldest_approval_seconds"] >= 0.05


def test_health_ages_are_null_when_nothing_waits(client):
    health = client.get("/health").json
    assert health["oldest_waiting_seconds"] is None
    assert health["oldest_approval_seconds"] is None


def test_health_overall_age_is_zero_not_null_for_a_task_waiting_since_now(
    api, app, client, redis_server
):
    # Its creation millisecond is still now (or a stepped-back clock put it ahead): the
    # agent's age is 0.0, and the overall oldest must say a task waits, not "none".
    task_id = api.create()["task"]["task_id"]
    ahead = f"{datetime.now(UTC) + timedelta(minutes=1):%Y-%m-%dT%H:%M:%S.000Z}"
    redis_server.client().hset(redis_keys(app).name("task", task_id), "created_at", ahead)
    health = client.get("/health").json
    assert health["agents"]["dev_agent"] == {"queued": 1, "oldest_waiting_seconds": 0.0}
    assert health["oldest_waiting_seconds"] == 0.0


def test_agents_show_queue_running_and_last_activity(api, client, keys):
    listing = api.call("GET", "/agents", as_="user")
    routed = {row["agent"]: row for row in listing["agents"]}
    assert routed["dev_agent"] == {
        "agent": "dev_agent",
        "queued": 0,
        "in_progress": 0,
        "last_claim_at": None,
        "last_heartbeat_at": None,
    }
    api.create()
    api.create()
    claimed = api.call("POST", "/tasks/claim", as_="agent", json={"agent": "dev_agent"})
    rows = {r["agent"]: r for r in api.call("GET", "/agents", as_="user")["agents"]}
    dev = rows["dev_agent"]
    assert (dev["queued"], dev["in_progress"]) == (1, 1)
    assert dev["last_claim_at"] and dev["last_heartbeat_at"] is None
    api.call("POST", f"/tasks/{claimed['task_id']}/heartbeat", as_="agent")
    dev = {r["agent"]: r for r in api.call("GET", "/agents", as_="user")["agents"]}["dev_agent"]
    assert dev["last_heartbeat_at"] >= dev["last_claim_at"]
    assert client.get("/agents").status_code == 401


def test_metrics_show_build_start_process_ages_and_lease_expiries(api, client):
    api.create()
    claimed = api.call(
        "POST", "/tasks/claim", as_="agent", json={"agent": "dev_agent", "lease_seconds": 1}
    )
    assert claimed["task_id"]
    time.sleep(1.1)
    text = client.get("/metrics").get_data(as_text=True)
    assert "orchestrator_lease_expiries_total 1.0" in text  # requeued when its lease ran out
    assert 'orchestrator_build_info{release="' in text
    assert "orchestrator_start_time_seconds" in text
    assert 'orchestrator_queue_oldest_age_seconds{agent="dev_agent"}' in text
    assert "orchestrator_approval_oldest_age_seconds 0.0" in text
