"""REDIS_URL=memory://: the in-process fakeredis demo mode, and the limits that keep it honest."""

from __future__ import annotations

import json
import time

import pytest
import requests

from app.config import ConfigError, Settings
from tests.conftest import HEADERS, JWT_SECRET
from tests.helpers import redis_keys

AGENT = HEADERS["agent"]


def next_message(pubsub, timeout: float = 2.0) -> dict | None:
    """The next published message (get_message returns None for subscribe confirmations)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            return message
    return None


@pytest.fixture
def memory_app(make_app):
    return make_app(redis_url="memory://")


def test_memory_mode_works_end_to_end(memory_app):
    client = memory_app.test_client()
    settings = memory_app.extensions["orchestrator.settings"]
    assert settings.uses_memory_redis
    live = memory_app.extensions["orchestrator.redis"].pubsub(ignore_subscribe_messages=True)
    live.subscribe(redis_keys(memory_app).event_channel("deploy.succeeded"))

    created = client.post("/tasks", json={"type": "bugfix", "priority": "P3"}, headers=AGENT)
    assert created.status_code == 201
    task_id = created.json["task_id"]
    assert created.json["task"]["status"] == "assigned"
    assert created.json["task"]["assigned_to"] == "dev_agent"

    claimed = client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=AGENT)
    assert claimed.status_code == 200
    assert claimed.json["task_id"] == task_id and claimed.json["task"]["status"] == "in_progress"
    assert (
        client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=AGENT).status_code == 204
    )

    published = client.post(
        "/events/publish",
        headers=AGENT,
        json={"event_type": "deploy.succeeded", "source_agent": "ops_agent", "payload": {"v": 1}},
    )
    assert published.status_code == 201 and published.json["success"] is True
    message = next_message(live)
    assert message is not None and json.loads(message["data"])["payload"] == {"v": 1}
    replay = client.get("/events?type=deploy.succeeded", headers=AGENT)
    assert [e["event_id"] for e in replay.json["events"]] == [published.json["event_id"]]

    done = client.patch(f"/tasks/{task_id}/status", json={"status": "completed"}, headers=AGENT)
    assert done.status_code == 200 and done.json["task"]["status"] == "completed"

    health = client.get("/health")
    assert health.status_code == 200
    assert health.json["status"] == "healthy" and health.json["redis"] == "connected"
    assert health.json["queue_stats"]["completed"] == 1
    assert health.json["queue_stats"]["pending"] == 0


def test_each_memory_app_has_its_own_store(make_app):
    first, second = make_app(redis_url="memory://"), make_app(redis_url="memory://")
    created = first.test_client().post("/tasks", json={"type": "faq"}, headers=AGENT)
    assert created.status_code == 201
    path = f"/tasks/{created.json['task_id']}"
    assert first.test_client().get(path, headers=AGENT).status_code == 200
    assert second.test_client().get(path, headers=AGENT).status_code == 404


def test_memory_mode_is_refused_in_production():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "ENVIRONMENT": "production",
                "REDIS_URL": "memory://",
                "ORCHESTRATOR_JWT_SECRET": JWT_SECRET,
            }
        )
    assert caught.value.variable == "REDIS_URL"


def test_gunicorn_runs_one_worker_and_says_so(live_server):
    server = live_server(workers=3, redis_url="memory://")
    assert len(server.worker_pids()) == 1
    logs = server.logs()
    assert "REDIS_URL=memory://" in logs and "running 1 gunicorn worker instead of 3" in logs
    # One worker means one store: what one request writes, every later request reads.
    created = requests.post(
        f"{server.url}/tasks", json={"type": "incident", "priority": "P3"}, headers=AGENT, timeout=5
    )
    assert created.status_code == 201
    task_id = created.json()["task_id"]
    for _ in range(5):
        fetched = requests.get(f"{server.url}/tasks/{task_id}", headers=AGENT, timeout=5)
        assert fetched.status_code == 200 and fetched.json()["task"]["assigned_to"] == "ops_agent"
    health = requests.get(f"{server.url}/health", timeout=5)
    assert health.status_code == 200 and health.json()["queue_stats"]["pending"] == 1
