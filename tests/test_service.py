"""GET /, /health and /stats on a real Redis."""

from __future__ import annotations

import time

import requests

from app import __version__


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
