"""Bodies the service cannot store: lone surrogates, huge integers, foreign digits, non-JSON.

Each is a 400, 415 or 422 naming the field, against a live gunicorn, and nothing is stored.
"""

from __future__ import annotations

import base64

import pytest
import requests

from tests.conftest import HEADERS

SURROGATE = '"\\ud800"'
HUGE = "9" * 5000


@pytest.fixture(scope="module")
def server(module_live_server):
    """One gunicorn for the module."""
    return module_live_server(workers=1)


def post(server, path: str, body: str, *, as_="agent", content_type="application/json"):
    headers = {**HEADERS[as_], **({"Content-Type": content_type} if content_type else {})}
    return requests.post(f"{server.url}{path}", data=body.encode(), headers=headers, timeout=5)


def stored_tasks(server) -> int:
    return requests.get(f"{server.url}/stats", timeout=5).json()["queue"]["pending"]


CASES = [
    ("/tasks", '{"type": "bugfix", "trace_id": BAD}', SURROGATE, "trace_id"),
    ("/tasks", '{"type": "bugfix", "source": BAD}', SURROGATE, "source"),
    ("/tasks", '{"type": "bugfix", "sla": {"target": BAD}}', SURROGATE, "sla"),
    ("/tasks", '{"type": "bugfix", "payload": {"k": [BAD]}}', SURROGATE, "payload"),
    ("/tasks", '{"type": "bugfix", "max_retries": BAD}', HUGE, "max_retries"),
    ("/tasks", '{"type": "bugfix", "payload": {"n": -BAD}}', HUGE, "payload"),
    ("/events/publish", '{"event_type": "a.b", "source_agent": BAD, "payload": {}}', SURROGATE,
     "source_agent"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "bad", "field"), CASES)
def test_unstorable_values_are_422_naming_the_field(server, path, body, bad, field):
    before = stored_tasks(server)
    response = post(server, path, body.replace("BAD", bad))
    assert response.status_code == 422, response.text
    assert field in response.json()["errors"]
    assert stored_tasks(server) == before


@pytest.mark.parametrize("field", ["error", "reason", "comment"])
def test_surrogates_in_status_reject_and_cancel_bodies_are_422(server, field):
    task = post(server, "/tasks", '{"type": "deploy"}').json()
    paths = {
        "error": (
            "PATCH",
            f"/tasks/{task['task_id']}/status",
            '{"status": "failed", "error": BAD}',
        ),
        "reason": ("POST", f"/approvals/{task['approval_id']}/reject", '{"reason": BAD}'),
        "comment": ("POST", f"/approvals/{task['approval_id']}/approve", '{"comment": BAD}'),
    }
    method, path, body = paths[field]
    response = requests.request(
        method,
        f"{server.url}{path}",
        data=body.replace("BAD", SURROGATE).encode(),
        headers={**HEADERS["ops"], "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 422 and field in response.json()["errors"]


def test_a_cursor_hiding_other_scripts_digits_is_422(server):
    cursor = base64.urlsafe_b64encode("t:١٢٣".encode()).decode().rstrip("=")
    response = requests.get(
        f"{server.url}/tasks", params={"cursor": cursor}, headers=HEADERS["user"], timeout=5
    )
    assert response.status_code == 422 and "cursor" in response.json()["errors"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_415(server, content_type):
    before = stored_tasks(server)
    response = post(server, "/tasks", '{"type": "bugfix"}', content_type=content_type)
    assert response.status_code == 415
    assert response.json() == {"detail": "Content-Type must be application/json"}
    assert stored_tasks(server) == before


def test_a_webhook_body_not_declared_json_is_415_and_subscribes_nothing(server):
    """Every blueprint reads bodies through the strict parser, the webhooks' too."""
    body = '{"url": "https://hooks.example.com/x", "events": ["task.*"]}'
    listed = requests.get(f"{server.url}/webhooks", headers=HEADERS["admin"], timeout=5)
    response = post(server, "/webhooks", body, as_="admin", content_type="text/plain")
    assert response.status_code == 415
    assert response.json() == {"detail": "Content-Type must be application/json"}
    after = requests.get(f"{server.url}/webhooks", headers=HEADERS["admin"], timeout=5)
    assert after.json() == listed.json()


def test_auth_token_does_not_ignore_a_body_without_json_content_type(server):
    response = post(server, "/auth/token", '{"role": "user"}', as_="admin", content_type=None)
    assert response.status_code == 415
    downgraded = post(server, "/auth/token", '{"role": "user"}', as_="admin")
    assert downgraded.status_code == 200 and downgraded.json()["role"] == "user"
