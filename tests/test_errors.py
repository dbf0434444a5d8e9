"""The JSON error path: every failure is {"detail": ...}, never HTML, never a traceback."""

from __future__ import annotations

import uuid

import pytest

from harness import free_port

TASK_ID = "4b1c2f0e-8a3d-4c5e-9f6a-1b2c3d4e5f60"  # well-formed UUID4, never created
APPROVAL_ID = f"apr-{TASK_ID}"


def assert_json_error(response, status: int) -> dict:
    """The status, a JSON content type and a body with a string `detail`."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/tasks"),
        ("post", "/events/publish"),
        ("post", "/tasks/claim"),
        ("patch", f"/tasks/{TASK_ID}/status"),
    ],
)
@pytest.mark.parametrize("data", ["{not json", '{"type": "bugfix",}', "\x00\x01"])
def test_malformed_json_is_400(client, keys, method, path, data):
    response = getattr(client, method)(
        path, data=data, content_type="application/json", headers=keys["agent"]
    )
    body = assert_json_error(response, 400)
    assert body["detail"] == "Malformed JSON body"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"type"}),
        ({"type": "nope"}, {"type"}),
        ({"type": "bugfix", "priority": "P9"}, {"priority"}),
        ({"type": "bugfix", "payload": "not an object"}, {"payload"}),
        ({"type": "bugfix", "surprise": 1}, {"surprise"}),
        ({"type": "nope", "priority": "P9", "surprise": 1}, {"type", "priority", "surprise"}),
    ],
)
def test_schema_violation_is_422_with_errors_by_field(client, keys, body, fields):
    response = client.post("/tasks", json=body, headers=keys["agent"])
    error = assert_json_error(response, 422)
    assert set(error["errors"]) == fields
    for messages in error["errors"].values():
        assert messages and all(isinstance(m, str) and m for m in messages)


def test_unknown_type_lists_the_valid_ones(client, keys):
    error = assert_json_error(
        client.post("/tasks", json={"type": "nope"}, headers=keys["agent"]), 422
    )
    assert "bugfix" in error["errors"]["type"][0] and "knowledge_sync" in error["errors"]["type"][0]


@pytest.mark.parametrize("query", ["limit=abc", "limit=0", "limit=1001", "status=sleeping"])
def test_bad_query_parameter_is_422(client, keys, query):
    error = assert_json_error(client.get(f"/tasks?{query}", headers=keys["user"]), 422)
    assert set(error["errors"]) == {query.partition("=")[0]}


@pytest.mark.parametrize("path", ["/nope", "/tasks/", "/api/tasks", "/docs/assets/missing.js"])
def test_unknown_route_is_404_json(client, path):
    assert_json_error(client.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/tasks", {"GET", "POST"}),
        ("put", "/health", {"GET"}),
        ("post", "/stats", {"GET"}),
        ("get", "/events/publish", {"POST"}),
        ("delete", f"/tasks/{TASK_ID}", {"GET"}),
    ],
)
def test_wrong_method_is_405_json(client, keys, method, path, allowed):
    response = getattr(client, method)(path, headers=keys["admin"])
    assert_json_error(response, 405)
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        (f"/tasks/{TASK_ID}", "Task not found"),
        (f"/approvals/{APPROVAL_ID}", "Approval not found"),
    ],
)
def test_unknown_id_is_404(client, keys, path, detail):
    assert assert_json_error(client.get(path, headers=keys["user"]), 404)["detail"] == detail


GARBAGE = [
    ("get", "/tasks/not-a-uuid"),
    ("get", f"/tasks/{TASK_ID.upper()}"),
    ("get", f"/tasks/{uuid.uuid1()}"),  # a UUID, but not a version 4 one
    ("patch", "/tasks/not-a-uuid/status?status=completed"),
    ("post", "/tasks/not-a-uuid/cancel"),
    ("post", "/tasks/not-a-uuid/heartbeat"),
    ("get", "/approvals/not-an-id"),
    ("get", f"/approvals/{TASK_ID}"),  # a task id is not an approval id
    ("post", "/approvals/not-an-id/approve"),
    ("post", "/approvals/not-an-id/reject"),
]


@pytest.fixture
def app_without_redis(make_app):
    """An app whose Redis URL points at a loopback port where nothing listens."""
    return make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.parametrize(("method", "path"), GARBAGE)
def test_garbage_id_is_404(client, keys, method, path):
    response = getattr(client, method)(path, headers=keys["admin"])
    # The route matched, so the 404 names the resource rather than saying no route exists.
    detail = "Approval not found" if path.startswith("/approvals/") else "Task not found"
    assert assert_json_error(response, 404)["detail"] == detail


@pytest.mark.parametrize("path", [f"/tasks/{TASK_ID}", f"/approvals/{APPROVAL_ID}"])
def test_well_formed_id_does_ask_redis(app_without_redis, keys, path):
    response = app_without_redis.test_client().get(path, headers=keys["admin"])
    assert assert_json_error(response, 503)["detail"] == "Redis unavailable"


def test_garbage_id_is_counted_but_never_reaches_the_domain(make_app, own_redis, keys):
    """Every request is counted by the limiter; a garbage id stops before any script, so
    its hit, which would have ridden on the script, is taken on its own."""
    client = make_app(redis_url=own_redis.url).test_client()
    probe = own_redis.client()

    def script_calls() -> int:
        return probe.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)

    # Every script these requests run is loaded: get_task, and the limiter's on its own.
    client.get(f"/tasks/{TASK_ID}", headers=keys["admin"])
    client.get("/tasks/not-a-uuid", headers=keys["admin"])
    before = script_calls()
    for method, path in GARBAGE:
        assert_json_error(getattr(client, method)(path, headers=keys["admin"]), 404)
    assert script_calls() == before + len(GARBAGE)  # one limiter hit each, nothing else
    assert_json_error(client.get(f"/tasks/{TASK_ID}", headers=keys["admin"]), 404)
    assert script_calls() == before + len(GARBAGE) + 1  # get_task, the hit riding on it


def test_garbage_id_still_needs_credentials(client):
    response = client.get("/tasks/not-a-uuid")
    assert_json_error(response, 401)
    assert "WWW-Authenticate" in response.headers


SECRET_TEXT = "kaboom-secret-detail-1234"


@pytest.fixture
def exploding_client(make_app):
    """An app with a throwaway route whose view raises an unexpected exception."""
    app = make_app()

    def explode():
        raise RuntimeError(SECRET_TEXT)

    def explode_late():
        return {"not": "serializable", "value": object()}

    app.add_url_rule("/_boom", "boom", explode, methods=["GET", "POST"])
    app.add_url_rule("/_boom_late", "boom_late", explode_late)
    return app.test_client()


@pytest.mark.parametrize("path", ["/_boom", "/_boom_late"])
def test_unexpected_exception_is_a_bare_500(exploding_client, path, caplog):
    response = exploding_client.get(path)
    body = assert_json_error(response, 500)
    assert body == {"detail": "Internal server error"}
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and SECRET_TEXT not in text and "File " not in text
    # The traceback goes to the log instead, where an operator can read it.
    assert any(record.exc_info for record in caplog.records if record.name == "orchestrator.errors")


def test_every_error_response_is_json(client, keys, exploding_client):
    responses = [
        client.post("/tasks", data="{", content_type="application/json", headers=keys["agent"]),
        client.post("/tasks", json={}, headers=keys["agent"]),
        client.post("/tasks", json={"type": "bugfix"}),  # 401
        client.post("/tasks", json={"type": "bugfix"}, headers=keys["user"]),  # 403
        client.get("/nope"),
        client.put("/"),
        client.get(f"/tasks/{TASK_ID}", headers=keys["user"]),
        client.post(
            "/tasks",
            data="x" * (2 * 1024 * 1024),
            content_type="application/json",
            headers=keys["agent"],
        ),  # 413
        exploding_client.get("/_boom"),
    ]
    assert [r.status_code for r in responses] == [400, 422, 401, 403, 404, 405, 404, 413, 500]
    for response in responses:
        assert_json_error(response, response.status_code)
        assert "<html" not in response.get_data(as_text=True).lower()


@pytest.mark.parametrize("path", [f"/tasks/{TASK_ID}/status", "/tasks/not-a-uuid/status"])
def test_id_check_leaves_cors_preflight_alone(make_app, path):
    client = make_app(ORCHESTRATOR_CORS_ORIGINS="https://app.example.com").test_client()
    response = client.options(
        path,
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "X-API-Key, Content-Type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
