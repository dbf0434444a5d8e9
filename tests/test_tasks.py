"""The task endpoints on a real Redis: create, validation, routing, idempotency, listing,
claims, cancel, 404s, and how many Redis round trips each hot path costs."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import datetime, timedelta

import pytest

from app.domain.model import DEFAULT_ROUTES
from tests.conftest import PRINCIPALS

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
TASK_FIELDS = {
    "task_id",
    "type",
    "priority",
    "source",
    "status",
    "payload",
    "metadata",
    "trace_id",
    "assigned_to",
    "created_by",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "sla",
    "parent_task_id",
    "error",
    "retry_count",
    "max_retries",
    "approval_id",
    "claimed_by",
    "lease_expires_at",
}
# P3 bugfix: routed to dev_agent and never gated, the plainest task there is.
PLAIN = {"type": "bugfix", "priority": "P3"}


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def create(client, headers, **body):
    """Create a task (PLAIN unless overridden) and return its record; asserts 201."""
    response = client.post("/tasks", json={**PLAIN, **body}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["task"]


def claim(client, headers, agent="dev_agent", **extra):
    return client.post("/tasks/claim", json={"agent": agent, **extra}, headers=headers)


def list_ids(client, headers, query=""):
    response = client.get(f"/tasks?{query}", headers=headers)
    assert response.status_code == 200, response.json
    return [task["task_id"] for task in response.json["tasks"]]


def walk_pages(client, headers, query, limit):
    """Every task id over every page, in order, and the number of pages read."""
    seen, cursor, pages = [], None, 0
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        body = client.get(f"/tasks?limit={limit}&{query}{suffix}", headers=headers).json
        pages += 1
        assert body["count"] == len(body["tasks"]) <= limit
        seen += [task["task_id"] for task in body["tasks"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages


# --- create ------------------------------------------------------------------------------


def test_create_answers_201_with_location_and_the_spec_body(client, keys):
    response = client.post("/tasks", json={"type": "bugfix"}, headers=keys["agent"])
    assert response.status_code == 201
    body = response.json
    task = body["task"]
    assert set(body) == {"success", "task_id", "message", "task"}
    assert body["success"] is True and body["task_id"] == task["task_id"]
    assert body["message"] == "Task created and assigned to dev_agent"
    assert response.headers["Location"] == f"/tasks/{task['task_id']}"
    assert set(task) == TASK_FIELDS
    assert uuid.UUID(task["task_id"]).version == 4
    assert task | {"created_at": None, "updated_at": None, "sla": None} == {
        "task_id": task["task_id"],
        "type": "bugfix",
        "priority": "P2",
        "source": "api",
        "status": "assigned",
        "payload": {},
        "metadata": {},
        "trace_id": task["task_id"],
        "assigned_to": "dev_agent",
        "created_by": PRINCIPALS["agent"],
        "created_at": None,
        "updated_at": None,
        "started_at": None,
        "completed_at": None,
        "sla": None,
        "parent_task_id": None,
        "error": None,
        "retry_count": 0,
        "max_retries": 3,
        "approval_id": None,
        "claimed_by": None,
        "lease_expires_at": None,
    }
    assert ISO_UTC.match(task["created_at"]) and ISO_UTC.match(task["updated_at"])
    assert task["sla"]["target"] == "24h" and ISO_UTC.match(task["sla"]["deadline"])
    assert parse(task["sla"]["deadline"]) - parse(task["created_at"]) == timedelta(hours=24)
    fetched = client.get(response.headers["Location"], headers=keys["user"])
    assert fetched.status_code == 200
    assert fetched.json == {"success": True, "task_id": task["task_id"], "task": task}


def test_create_keeps_what_the_caller_sent(client, keys, tokens):
    parent = create(client, keys["agent"])["task_id"]
    body = {
        "type": "investigate",
        "priority": "P3",
        "source": "github",
        "trace_id": "trace-1",
        "payload": {"repo": "x", "nested": {"list": [1, 2]}},
        "metadata": {"team": "core"},
        "parent_task_id": parent,
        "max_retries": 5,
        "sla_deadline": "2031-02-03T04:05:06Z",
    }
    response = client.post("/tasks", json=body, headers=tokens["agent"])
    assert response.status_code == 201
    task = response.json["task"]
    assert {name: task[name] for name in body if name != "sla_deadline"} == {
        name: value for name, value in body.items() if name != "sla_deadline"
    }
    assert task["sla"]["deadline"] == "2031-02-03T04:05:06.000Z"
    assert task["created_by"] == "jwt-agent"


def test_gated_task_waits_for_approval_and_names_it(client, keys):
    response = client.post(
        "/tasks", json={"type": "bugfix", "priority": "P0"}, headers=keys["agent"]
    )
    assert response.status_code == 201
    body = response.json
    assert body["task"]["status"] == "awaiting_approval"
    assert body["approval_id"] == body["task"]["approval_id"] == f"apr-{body['task_id']}"
    assert body["message"] == f"Task created; awaiting approval {body['approval_id']}"
    assert claim(client, keys["agent"]).status_code == 204  # never claimable while gated


VALID_TYPES = ", ".join(DEFAULT_ROUTES)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"type": "nope"}, "type", f"Must be one of: {VALID_TYPES}."),
        ({}, "type", "Missing data for required field."),
        ({"type": 7}, "type", "Not a valid string."),
        ({"type": "bugfix", "priority": "P4"}, "priority", "Must be one of: P0, P1, P2, P3."),
        ({"type": "bugfix", "priority": "p1"}, "priority", "Must be one of: P0, P1, P2, P3."),
        ({"type": "bugfix", "payload": [1, 2]}, "payload", "Not a valid mapping type."),
        ({"type": "bugfix", "payload": "text"}, "payload", "Not a valid mapping type."),
        ({"type": "bugfix", "metadata": 3}, "metadata", "Not a valid mapping type."),
        ({"type": "bugfix", "sla_deadline": "tomorrow"}, "sla_deadline", None),
        ({"type": "bugfix", "sla_deadline": "2030-13-01T00:00:00Z"}, "sla_deadline", None),
        ({"type": "bugfix", "sla": {"deadline": "soon"}}, "sla", None),
        ({"type": "bugfix", "source": "s" * 201}, "source", "Length must be between 1 and 200."),
        ({"type": "bugfix", "source": ""}, "source", "Length must be between 1 and 200."),
        (
            {"type": "bugfix", "trace_id": "t" * 129},
            "trace_id",
            "Length must be between 1 and 128.",
        ),
        ({"type": "bugfix", "sla": {"target": "x" * 65}}, "sla", None),
        (
            {"type": "bugfix", "parent_task_id": "not-a-uuid"},
            "parent_task_id",
            "Must be a task id (UUID4).",
        ),
        ({"type": "bugfix", "max_retries": -1}, "max_retries", None),
        ({"type": "bugfix", "max_retries": 101}, "max_retries", None),
        ({"type": "bugfix", "owner": "me"}, "owner", "Unknown field."),
        ({"type": "bugfix", "status": "completed"}, "status", "Unknown field."),
    ],
)
def test_create_rejects_invalid_bodies_with_422(client, keys, body, field, message):
    response = client.post("/tasks", json=body, headers=keys["agent"])
    assert response.status_code == 422
    assert response.json["detail"] == "Validation failed"
    assert list(response.json["errors"]) == [field]
    if message:
        assert response.json["errors"][field] == [message]
    assert client.get("/stats").json["tasks"]["assigned"] == 0


@pytest.mark.parametrize(("data", "status"), [("[1, 2]", 422), ("null", 422), ("{bad", 400)])
def test_create_rejects_non_object_and_malformed_json(client, keys, data, status):
    response = client.post(
        "/tasks", data=data, content_type="application/json", headers=keys["agent"]
    )
    assert response.status_code == status
    assert "detail" in response.json and "Traceback" not in response.get_data(as_text=True)


def test_naive_sla_deadline_is_read_as_utc(client, keys):
    task = create(client, keys["agent"], sla_deadline="2031-02-03T04:05:06")
    assert task["sla"]["deadline"] == "2031-02-03T04:05:06.000Z"


@pytest.mark.parametrize(("role", "status"), [("user", 403), (None, 401)])
def test_create_needs_the_agent_role(client, keys, role, status):
    response = client.post("/tasks", json=PLAIN, headers=keys[role] if role else {})
    assert response.status_code == status
    assert response.json["detail"]


# --- routing -----------------------------------------------------------------------------


@pytest.mark.parametrize(("task_type", "agent"), sorted(DEFAULT_ROUTES.items()))
def test_every_type_routes_to_its_default_agent(client, keys, task_type, agent):
    task = create(client, keys["agent"], type=task_type, payload={"environment": "staging"})
    assert (task["assigned_to"], task["status"]) == (agent, "assigned")
    claimed = claim(client, keys["agent"], agent=agent)
    assert claimed.status_code == 200 and claimed.json["task_id"] == task["task_id"]


def test_routing_rules_override_the_table(make_app, keys):
    client = make_app(
        ORCHESTRATOR_ROUTING_RULES="bugfix=ops_agent, faq=special_agent"
    ).test_client()
    moved = create(client, keys["agent"], type="bugfix")
    special = create(client, keys["agent"], type="faq")
    unchanged = create(client, keys["agent"], type="investigate")
    assert [moved["assigned_to"], special["assigned_to"], unchanged["assigned_to"]] == [
        "ops_agent",
        "special_agent",
        "dev_agent",
    ]
    assert claim(client, keys["agent"], agent="special_agent").json["task_id"] == special["task_id"]
    assert claim(client, keys["agent"], agent="ops_agent").json["task_id"] == moved["task_id"]
    assert claim(client, keys["agent"], agent="dev_agent").json["task_id"] == unchanged["task_id"]
    assert client.get("/stats").json["agents"] == {
        "dev_agent": 0,
        "ops_agent": 0,
        "special_agent": 0,
    }


# --- idempotency -------------------------------------------------------------------------


def test_repeated_idempotency_key_replays_status_and_body(client, keys):
    headers = {**keys["agent"], "Idempotency-Key": "order-42"}
    first = client.post("/tasks", json=PLAIN, headers=headers)
    # The task moves on; the replay still answers what the first request got.
    assert claim(client, keys["agent"]).status_code == 200
    again = client.post("/tasks", json=PLAIN, headers=headers)
    assert (again.status_code, again.json) == (first.status_code, first.json) == (201, first.json)
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert list_ids(client, keys["user"]) == [first.json["task_id"]]


def test_idempotency_key_with_a_different_body_is_422(client, keys):
    headers = {**keys["agent"], "Idempotency-Key": "order-43"}
    first = client.post("/tasks", json=PLAIN, headers=headers)
    other = client.post("/tasks", json={**PLAIN, "payload": {"x": 1}}, headers=headers)
    assert first.status_code == 201
    assert other.status_code == 422
    assert other.json == {
        "detail": "Idempotency-Key was already used with a different request body",
        "errors": {"Idempotency-Key": ["Reused with a different body."]},
    }
    assert list_ids(client, keys["user"]) == [first.json["task_id"]]


def test_idempotency_keys_belong_to_one_principal(client, keys):
    mine = client.post("/tasks", json=PLAIN, headers={**keys["agent"], "Idempotency-Key": "k"})
    theirs = client.post("/tasks", json=PLAIN, headers={**keys["ops"], "Idempotency-Key": "k"})
    assert mine.status_code == theirs.status_code == 201
    assert mine.json["task_id"] != theirs.json["task_id"]
    assert theirs.json["task"]["created_by"] == PRINCIPALS["ops"]
    assert "Idempotent-Replayed" not in theirs.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "caf\u00e9"])
def test_malformed_idempotency_key_is_422(client, keys, key):
    headers = {**keys["agent"], "Idempotency-Key": key.encode().decode("latin-1")}
    response = client.post("/tasks", json=PLAIN, headers=headers)
    assert response.status_code == 422
    assert response.json["errors"] == {"Idempotency-Key": ["1-255 printable ASCII characters."]}


# --- reading and listing -----------------------------------------------------------------


def test_list_pages_visit_every_task_once_newest_first(client, keys):
    created = [create(client, keys["agent"])["task_id"] for _ in range(7)]
    seen, pages = walk_pages(client, keys["user"], "", limit=3)
    assert seen == created[::-1]
    assert pages == 3
    first = client.get("/tasks", headers=keys["user"]).json
    assert (first["success"], first["count"], first["next_cursor"]) == (True, 7, None)


def test_list_filters_by_status_type_and_agent(client, keys):
    bug = create(client, keys["agent"])["task_id"]
    faq = create(client, keys["agent"], type="faq")["task_id"]
    alert = create(client, keys["agent"], type="alert")["task_id"]
    gated = create(client, keys["agent"], priority="P0")["task_id"]
    running = claim(client, keys["agent"], agent="faq_agent").json["task_id"]
    user = keys["user"]
    assert running == faq
    assert list_ids(client, user, "status=assigned") == [alert, bug]
    assert list_ids(client, user, "status=in_progress") == [faq]
    assert list_ids(client, user, "status=awaiting_approval") == [gated]
    assert list_ids(client, user, "type=bugfix") == [gated, bug]
    assert list_ids(client, user, "assigned_to=ops_agent") == [alert]
    assert list_ids(client, user, "type=bugfix&status=assigned&assigned_to=dev_agent") == [bug]
    assert list_ids(client, user, "status=completed") == []
    seen, _ = walk_pages(client, user, "type=bugfix", limit=1)
    assert seen == [gated, bug]


def test_list_limit_defaults_to_100(client, keys):
    created = [create(client, keys["agent"])["task_id"] for _ in range(101)]
    body = client.get("/tasks", headers=keys["user"]).json
    assert body["count"] == 100
    assert [task["task_id"] for task in body["tasks"]] == created[:0:-1]
    rest = client.get(f"/tasks?cursor={body['next_cursor']}", headers=keys["user"]).json
    assert [task["task_id"] for task in rest["tasks"]] == [created[0]]
    assert rest["next_cursor"] is None
    assert len(list_ids(client, keys["user"], "limit=1000")) == 101


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "status=pending",
        "type=nope",
        "assigned_to=Dev%20Agent",
        "cursor=",
        "cursor=%%%",
        "cursor=" + "A" * 65,
        "cursor=" + _b64("x:12"),
        "cursor=" + _b64("t:abc"),
        "cursor=" + _b64("t:" + "9" * 20),
        "cursor=" + _b64("t:"),
    ],
)
def test_list_rejects_bad_queries_with_422(client, keys, query):
    response = client.get(f"/tasks?{query}", headers=keys["user"])
    assert response.status_code == 422
    assert response.json["detail"] in ("Validation failed", "Invalid cursor")
    assert response.json["errors"]


def test_reading_needs_credentials(client):
    response = client.get("/tasks")
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/tasks/{id}"),
        ("patch", "/tasks/{id}/status?status=completed"),
        ("post", "/tasks/{id}/cancel"),
        ("post", "/tasks/{id}/heartbeat"),
    ],
)
@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), str(uuid.uuid4()).upper(), "1"])
def test_unknown_task_is_404(client, keys, method, path, task_id):
    response = getattr(client, method)(path.format(id=task_id), headers=keys["agent"])
    assert response.status_code == 404
    assert response.json == {"detail": "Task not found"}


# --- status, cancel and claims -----------------------------------------------------------


def test_status_comes_from_query_or_body_with_error(client, keys):
    by_query = create(client, keys["agent"])["task_id"]
    by_body = create(client, keys["agent"])["task_id"]
    first = client.patch(
        f"/tasks/{by_query}/status?status=failed&error=disk%20full", headers=keys["agent"]
    )
    second = client.patch(
        f"/tasks/{by_body}/status", json={"status": "completed"}, headers=keys["agent"]
    )
    assert first.status_code == second.status_code == 200
    assert (first.json["task"]["status"], first.json["task"]["error"]) == ("failed", "disk full")
    assert first.json["message"] == "Task is now failed"
    assert (second.json["task"]["status"], second.json["task"]["error"]) == ("completed", None)
    assert ISO_UTC.match(second.json["task"]["completed_at"])


@pytest.mark.parametrize(
    ("query", "body", "field"),
    [
        ("", None, "status"),
        ("status=done", None, "status"),
        ("", {"status": "pending"}, "status"),
        ("", {"status": "failed", "error": "e" * 2001}, "error"),
        ("", {"status": "failed", "why": "x"}, "why"),
    ],
)
def test_status_update_validation(client, keys, query, body, field):
    task_id = create(client, keys["agent"])["task_id"]
    response = client.patch(f"/tasks/{task_id}/status?{query}", json=body, headers=keys["agent"])
    assert response.status_code == 422
    assert field in response.json["errors"]
    assert (
        client.get(f"/tasks/{task_id}", headers=keys["user"]).json["task"]["status"] == "assigned"
    )


def test_status_update_needs_the_agent_role(client, keys):
    task_id = create(client, keys["agent"])["task_id"]
    response = client.patch(f"/tasks/{task_id}/status?status=completed", headers=keys["user"])
    assert response.status_code == 403


@pytest.mark.parametrize("setup", ["assigned", "in_progress", "awaiting_approval"])
def test_cancel_stops_a_task_that_has_not_finished(client, keys, setup):
    task = create(client, keys["agent"], priority="P0" if setup == "awaiting_approval" else "P3")
    if setup == "in_progress":
        assert claim(client, keys["agent"]).status_code == 200
    response = client.post(
        f"/tasks/{task['task_id']}/cancel", json={"reason": "not needed"}, headers=keys["agent"]
    )
    assert response.status_code == 200
    assert response.json["message"] == "Task cancelled"
    assert (response.json["task"]["status"], response.json["task"]["error"]) == (
        "cancelled",
        "not needed",
    )
    stats = client.get("/stats").json
    assert stats["tasks"]["cancelled"] == 1 and stats["tasks"][setup] == 0
    assert stats["approvals"] == {"pending": 0}
    assert claim(client, keys["agent"]).status_code == 204
    again = client.post(f"/tasks/{task['task_id']}/cancel", headers=keys["agent"])
    assert again.status_code == 409
    assert again.json == {
        "detail": "Task is cancelled; cannot move it to cancelled",
        "current_status": "cancelled",
    }


def test_claim_hands_out_the_task_with_a_lease(client, keys):
    task_id = create(client, keys["agent"])["task_id"]
    response = claim(client, keys["ops"], lease_seconds=60)
    assert response.status_code == 200
    task = response.json["task"]
    assert response.json["task_id"] == task_id
    assert (task["status"], task["claimed_by"]) == ("in_progress", PRINCIPALS["ops"])
    assert ISO_UTC.match(task["started_at"]) and ISO_UTC.match(task["lease_expires_at"])
    assert response.json["message"] == f"Task claimed until {task['lease_expires_at']}"
    empty = claim(client, keys["ops"])
    assert (empty.status_code, empty.get_data()) == (204, b"")
    stats = client.get("/stats").json
    assert stats["queue"]["pending"] == 0 and stats["queue"]["in_progress"] == 1


def test_claims_take_highest_priority_first_then_oldest(make_app, keys):
    # Priority gating off, so P0 and P1 tasks are queued at once.
    client = make_app(ORCHESTRATOR_HITL_PRIORITIES="none").test_client()
    order = ["P3", "P2", "P0", "P2", "P1", "P3", "P0", "P1"]
    created = [(create(client, keys["agent"], priority=p)["task_id"], p) for p in order]
    expected = [task_id for task_id, _ in sorted(created, key=lambda item: item[1])]
    claimed = [claim(client, keys["agent"]).json["task_id"] for _ in order]
    assert claimed == expected  # sorted() is stable: FIFO within a priority
    assert claim(client, keys["agent"]).status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "agent"),
        ({"agent": "Dev Agent"}, "agent"),
        ({"agent": "dev_agent", "lease_seconds": 0}, "lease_seconds"),
        ({"agent": "dev_agent", "lease_seconds": 43201}, "lease_seconds"),
        ({"agent": "dev_agent", "greedy": True}, "greedy"),
    ],
)
def test_claim_validation(client, keys, body, field):
    create(client, keys["agent"])
    response = client.post("/tasks/claim", json=body, headers=keys["agent"])
    assert response.status_code == 422
    assert list(response.json["errors"]) == [field]
    assert client.get("/stats").json["queue"]["pending"] == 1


def test_claim_needs_the_agent_role(client, keys):
    create(client, keys["agent"])
    assert claim(client, keys["user"]).status_code == 403
    assert client.get("/stats").json["queue"]["pending"] == 1


# --- Redis round trips -------------------------------------------------------------------


def client_commands(redis_server, do):
    """Commands clients sent Redis while do() ran (MONITOR; scripts' own calls left out)."""
    probe, marker = redis_server.client(), redis_server.client()
    sentinel = f"done-{uuid.uuid4().hex}"
    marker.ping()  # connected now, so its handshake is not counted below
    probe.config_resetstat()
    with probe.monitor() as monitor:
        do()
        marker.echo(sentinel)
        seen = []
        while True:
            entry = monitor.next_command()
            if sentinel in entry["command"]:
                break
            if entry["client_type"] != "lua":
                seen.append(entry["command"].split()[0].upper())
    evalsha = marker.info("commandstats").get("cmdstat_evalsha", {})
    return seen, evalsha.get("calls", 0)


@pytest.mark.parametrize("path", ["POST /tasks", "POST /tasks/claim", "GET /tasks/<id>"])
def test_hot_paths_cost_one_round_trip(make_app, keys, redis_server, path):
    client = make_app(ORCHESTRATOR_RATE_LIMIT_EXEMPT="apikey:agent").test_client()
    headers = keys["agent"]
    task_ids = [create(client, headers)["task_id"] for _ in range(3)]
    claim(client, headers)  # warm-up: the claim script is loaded now
    client.get(f"/tasks/{task_ids[0]}", headers=headers)  # and the read script
    calls = {
        "POST /tasks": lambda: client.post("/tasks", json=PLAIN, headers=headers),
        "POST /tasks/claim": lambda: claim(client, headers),
        "GET /tasks/<id>": lambda: client.get(f"/tasks/{task_ids[1]}", headers=headers),
    }
    responses = []
    commands, evalsha_calls = client_commands(redis_server, lambda: responses.append(calls[path]()))
    assert commands == ["EVALSHA"]
    assert evalsha_calls == 1
    expected = {
        "POST /tasks": (201, "assigned"),
        "POST /tasks/claim": (200, "in_progress"),
        "GET /tasks/<id>": (200, "assigned"),
    }[path]
    assert (responses[0].status_code, responses[0].json["task"]["status"]) == expected
