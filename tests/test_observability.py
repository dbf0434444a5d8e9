"""Prometheus metrics across workers, JSON access logs with principal and request id."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
import requests
from prometheus_client import REGISTRY

from tests.conftest import API_KEYS, HEADERS, JWT_SECRET
from tests.helpers import metric_sample


def _log_lines(server) -> list[dict]:
    lines = []
    for raw in server.logs().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


@pytest.fixture(scope="module")
def metrics_server(module_live_server):
    return module_live_server(workers=3, ORCHESTRATOR_METRICS_TOKEN="scrape-token-0123456789")


def test_counters_add_up_across_workers(metrics_server):
    agent = HEADERS["agent"]
    for _ in range(12):  # a new connection each time: spread over the three workers
        with requests.Session() as session:
            created = session.post(
                f"{metrics_server.url}/tasks",
                json={"type": "kb_update", "priority": "P3"},
                headers={**agent, "Connection": "close"},
                timeout=5,
            )
            assert created.status_code == 201
    scrape = requests.get(
        f"{metrics_server.url}/metrics",
        headers={"Authorization": "Bearer scrape-token-0123456789"},
        timeout=5,
    )
    assert scrape.status_code == 200
    assert scrape.headers["Content-Type"].startswith("text/plain")
    text = scrape.text
    assert (
        metric_sample(text, "orchestrator_tasks_created_total", type="kb_update", priority="P3")
        == 12
    )
    assert (
        metric_sample(
            text, "orchestrator_http_requests_total", method="POST", endpoint="/tasks", status="201"
        )
        == 12
    )
    assert metric_sample(text, "orchestrator_queue_depth", agent="faq_agent") == 12
    assert metric_sample(text, "orchestrator_redis_up") == 1
    assert "orchestrator_http_request_duration_seconds_bucket" in text
    assert len({line["pid"] for line in _worker_boot_lines(metrics_server)}) >= 2


def _worker_boot_lines(server) -> list[dict]:
    lines = []
    for line in _log_lines(server):
        match = re.search(r"Booting worker with pid: (\d+)", line.get("message", ""))
        if match:
            lines.append({"pid": int(match.group(1))})
    return lines


def test_metrics_without_a_token_are_open_and_add_up_across_workers(live_server):
    server = live_server(workers=2)  # base_env sets no ORCHESTRATOR_METRICS_TOKEN
    assert len(server.worker_pids()) == 2
    # A request that has sent only part of its headers holds one sync worker, so the
    # requests after it are all served by the other: both workers count some.
    held = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    held.sendall(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    time.sleep(0.3)
    for _ in range(5):
        other = requests.get(f"{server.url}/stats", headers={"Connection": "close"}, timeout=5)
        assert other.status_code == 200
    held.sendall(b"Connection: close\r\n\r\n")
    assert held.makefile("rb").readline().startswith(b"HTTP/1.1 200")
    held.close()

    scrape = requests.get(f"{server.url}/metrics", timeout=5)
    assert scrape.status_code == 200
    assert scrape.headers["Content-Type"].startswith("text/plain; version=")
    assert "# TYPE orchestrator_http_requests_total counter" in scrape.text
    # Whichever worker answers the scrape, it counts the other one's requests too.
    assert (
        metric_sample(
            scrape.text,
            "orchestrator_http_requests_total",
            method="GET",
            endpoint="/stats",
            status="200",
        )
        == 6
    )


def test_metrics_token_is_required_when_set(metrics_server):
    anonymous = requests.get(f"{metrics_server.url}/metrics", timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.json() == {"detail": "A valid metrics token is required"}
    wrong = requests.get(
        f"{metrics_server.url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=5
    )
    assert wrong.status_code == 401


def test_access_lines_are_json_with_principal_and_request_id(metrics_server):
    given = requests.get(
        f"{metrics_server.url}/tasks?limit=1",
        headers={"X-API-Key": API_KEYS["user"], "X-Request-ID": "req-abc.123"},
        timeout=5,
    )
    assert given.status_code == 200 and given.headers["X-Request-ID"] == "req-abc.123"
    invalid = requests.get(
        f"{metrics_server.url}/", headers={"X-Request-ID": "bad id with spaces"}, timeout=5
    )
    generated = invalid.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    refused = requests.get(
        f"{metrics_server.url}/tasks", headers={"X-API-Key": "not-a-key-123456789"}, timeout=5
    )
    assert refused.status_code == 401
    lines = _log_lines(metrics_server)
    access = [line for line in lines if line.get("message") == "request"]
    mine = [line for line in access if line["request_id"] == "req-abc.123"]
    assert len(mine) == 1
    line = mine[0]
    assert (line["method"], line["path"], line["status"], line["principal"]) == (
        "GET",
        "/tasks",
        200,
        "apikey:user",
    )
    assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
    assert [a["principal"] for a in access if a["request_id"] == generated] == ["-"]
    text = metrics_server.logs()
    for secret in (
        *API_KEYS.values(),
        JWT_SECRET,
        "not-a-key-123456789",
        "scrape-token-0123456789",
    ):
        assert secret not in text


def test_log_level_is_honoured(live_server):
    quiet = live_server(workers=1, LOG_LEVEL="WARNING")
    assert requests.get(f"{quiet.url}/health", timeout=5).status_code == 200
    levels = {line.get("level") for line in _log_lines(quiet) if line.get("message") != "request"}
    assert "INFO" not in levels and "DEBUG" not in levels
    assert any(line.get("message") == "request" for line in _log_lines(quiet))


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_auth_failures_and_rate_limits_are_counted(make_app, keys):
    client = make_app(ORCHESTRATOR_RATE_LIMIT_STATS="1").test_client()
    before = {
        reason: _counter("orchestrator_auth_failures_total", reason=reason)
        for reason in ("invalid_api_key", "missing_credentials", "insufficient_role")
    }
    limited = _counter("orchestrator_rate_limited_total", blueprint="stats")
    assert client.get("/tasks", headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 401
    assert client.get("/tasks").status_code == 401
    assert client.post("/tasks", json={"type": "faq"}, headers=keys["user"]).status_code == 403
    assert [client.get("/stats").status_code for _ in range(2)] == [200, 429]
    for reason, value in before.items():
        assert _counter("orchestrator_auth_failures_total", reason=reason) == value + 1
    assert _counter("orchestrator_rate_limited_total", blueprint="stats") == limited + 1


def test_transitions_and_decisions_are_counted(client, keys):
    def moved(status):
        return _counter("orchestrator_task_transitions_total", status=status)

    start = {s: moved(s) for s in ("in_progress", "completed", "assigned")}
    approved = _counter("orchestrator_approvals_decided_total", outcome="approved")
    client.post("/tasks", json={"type": "bugfix"}, headers=keys["agent"])
    task = client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=keys["agent"]).json
    client.patch(f"/tasks/{task['task_id']}/status?status=completed", headers=keys["agent"])
    gated = client.post("/tasks", json={"type": "deploy"}, headers=keys["agent"]).json
    client.post(f"/approvals/{gated['approval_id']}/approve", headers=keys["ops"])
    assert moved("in_progress") == start["in_progress"] + 1
    assert moved("completed") == start["completed"] + 1
    assert moved("assigned") == start["assigned"] + 2  # the create and the approval
    assert _counter("orchestrator_approvals_decided_total", outcome="approved") == approved + 1
