"""Edge inputs: nesting, non-JSON numbers, trailing newlines, preflights, blank secrets."""

from __future__ import annotations

import pytest

from app.config import Settings
from tests.conftest import base_env


def test_deeply_nested_body_is_400_not_500(client, keys):
    body = "[" * 100_000 + "]" * 100_000
    response = client.post(
        "/tasks", data=body, headers={**keys["agent"], "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json == {"detail": "Malformed JSON body: nested too deeply"}


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_in_a_task_payload_are_422(client, keys, number):
    body = '{"type": "bugfix", "payload": {"x": [1, ' + number + "]}}"
    response = client.post(
        "/tasks", data=body, headers={**keys["agent"], "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json["errors"] == {"payload": ["NaN and Infinity are not valid JSON numbers."]}
    assert client.get("/stats").json["tasks"]["assigned"] == 0


def test_parent_task_id_with_trailing_newline_is_422(client, keys):
    parent = "0b5c2f1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
    response = client.post(
        "/tasks", json={"type": "bugfix", "parent_task_id": parent + "\n"}, headers=keys["agent"]
    )
    assert response.status_code == 422 and "parent_task_id" in response.json["errors"]
    ok = client.post(
        "/tasks", json={"type": "bugfix", "parent_task_id": parent}, headers=keys["agent"]
    )
    assert ok.status_code == 201 and ok.json["task"]["parent_task_id"] == parent


def test_task_id_with_trailing_newline_is_404(client, keys):
    created = client.post("/tasks", json={"type": "faq"}, headers=keys["agent"]).json
    response = client.get(f"/tasks/{created['task_id']}%0A", headers=keys["user"])
    assert response.status_code == 404 and response.json == {"detail": "Task not found"}


def test_cors_preflight_is_never_rate_limited(make_app):
    app = make_app(
        ORCHESTRATOR_CORS_ORIGINS="https://app.example.com", ORCHESTRATOR_RATE_LIMIT_READS="1"
    )
    client = app.test_client()
    headers = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-API-Key, Content-Type",
    }
    statuses = [client.options("/tasks", headers=headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    anonymous = [client.get("/tasks").status_code for _ in range(2)]
    assert anonymous == [401, 429]  # the preflights did not use the one slot


def test_a_blank_named_api_key_is_unset(redis_server):
    settings = Settings.from_env(base_env(redis_server.url, ORCHESTRATOR_API_KEY_SPARE=""))
    assert "apikey:spare" not in {key.principal for key in settings.api_keys}


def test_release_defaults_to_the_render_commit(redis_server):
    env = base_env(redis_server.url, RENDER_GIT_COMMIT="0123456789abcdef0123")
    assert Settings.from_env(env).release == "0123456789ab"
    env["RELEASE"] = "v1.2.3"
    assert Settings.from_env(env).release == "v1.2.3"
