"""The HITL gate on a real Redis: gated tasks wait, decisions, four eyes, expiry, history."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.conftest import PRINCIPALS, mint_token

CREATOR, APPROVER = PRINCIPALS["agent"], PRINCIPALS["ops"]
UNKNOWN = "apr-00000000-0000-4000-8000-000000000000"
APPROVAL_FIELDS = {
    "approval_id",
    "task_id",
    "task_type",
    "priority",
    "reason",
    "status",
    "requested_by",
    "requested_at",
    "expires_at",
    "decided_by",
    "decided_at",
    "rejection_reason",
    "comment",
    "approved_by",
    "approved_at",
}


def gated(client, keys, **body) -> tuple[str, str]:
    """Create a P0 task as `agent` (so `ops` may decide it); returns (task_id, approval_id)."""
    response = client.post(
        "/tasks", json={"type": "bugfix", "priority": "P0", **body}, headers=keys["agent"]
    )
    assert response.status_code == 201, response.json
    assert response.json["task"]["status"] == "awaiting_approval"
    return response.json["task_id"], response.json["approval_id"]


def approval(client, keys, approval_id) -> dict:
    response = client.get(f"/approvals/{approval_id}", headers=keys["user"])
    assert response.status_code == 200, response.json
    return response.json


def task(client, keys, task_id) -> dict:
    response = client.get(f"/tasks/{task_id}", headers=keys["user"])
    assert response.status_code == 200, response.json
    return response.json["task"]


def event_types(client, keys, task_id) -> list[str]:
    response = client.get(f"/events?task_id={task_id}&order=asc", headers=keys["user"])
    assert response.status_code == 200, response.json
    return [event["event_type"] for event in response.json["events"]]


def listed(client, keys, which: str, **query) -> list[str]:
    response = client.get(f"/approvals/{which}", query_string=query, headers=keys["user"])
    assert response.status_code == 200, response.json
    assert response.json["count"] == len(response.json["approvals"])
    return [entry["approval_id"] for entry in response.json["approvals"]]


def claim(client, keys):
    return client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=keys["ops"])


def decide(client, headers, approval_id, verb, **kwargs):
    return client.post(f"/approvals/{approval_id}/{verb}", headers=headers, **kwargs)


def raw(app, redis_server, kind: str, ident: str) -> dict:
    """A record straight from Redis, without any script settling it first."""
    prefix = app.extensions["orchestrator.settings"].queue_prefix
    return redis_server.client().hgetall(f"{prefix}:{kind}:{ident}")


# --- the record -----------------------------------------------------------------------


def test_gated_create_opens_a_complete_approval_record(client, keys):
    task_id, approval_id = gated(client, keys, type="deploy", priority="P1")
    record = approval(client, keys, approval_id)
    assert set(record) == APPROVAL_FIELDS
    assert record["approval_id"] == approval_id == f"apr-{task_id}"
    assert (record["task_id"], record["task_type"], record["priority"]) == (task_id, "deploy", "P1")
    assert record["reason"] == "priority P1; deploy to production"
    assert (record["status"], record["requested_by"]) == ("pending", CREATOR)
    requested = datetime.fromisoformat(record["requested_at"])
    assert (datetime.fromisoformat(record["expires_at"]) - requested).total_seconds() == 86400
    assert all(
        record[name] is None
        for name in (
            "decided_by",
            "decided_at",
            "rejection_reason",
            "comment",
            "approved_by",
            "approved_at",
        )
    )
    assert task(client, keys, task_id)["approval_id"] == approval_id
    assert event_types(client, keys, task_id) == [
        "task.created",
        "task.awaiting_approval",
        "approval.requested",
    ]


def test_pending_lists_oldest_first(client, keys):
    created = [gated(client, keys)[1] for _ in range(3)]
    client.post("/tasks", json={"type": "bugfix"}, headers=keys["agent"])  # not gated
    assert listed(client, keys, "pending") == created


def test_idempotent_replay_opens_no_second_approval(client, keys):
    headers = {**keys["agent"], "Idempotency-Key": "gate-once"}
    first = client.post("/tasks", json={"type": "deploy"}, headers=headers)
    again = client.post("/tasks", json={"type": "deploy"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json["approval_id"] == first.json["approval_id"]
    assert listed(client, keys, "pending") == [first.json["approval_id"]]


# --- the gate holds ------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["in_progress", "completed", "failed", "assigned"])
def test_gated_task_can_be_neither_claimed_nor_moved(client, keys, status):
    task_id, approval_id = gated(client, keys)
    assert claim(client, keys).status_code == 204
    for kwargs in ({"query_string": {"status": status}}, {"json": {"status": status}}):
        response = client.patch(f"/tasks/{task_id}/status", headers=keys["ops"], **kwargs)
        assert response.status_code == 409
        assert response.json["current_status"] == "awaiting_approval"
    assert task(client, keys, task_id)["status"] == "awaiting_approval"
    assert approval(client, keys, approval_id)["status"] == "pending"
    assert claim(client, keys).status_code == 204


# --- decisions ---------------------------------------------------------------------------


def test_approve_queues_the_task(client, keys):
    task_id, approval_id = gated(client, keys)
    response = decide(client, keys["ops"], approval_id, "approve", json={"comment": "lgtm"})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["success"] is True
    assert body["task"]["status"] == "assigned"
    record = body["approval"]
    assert (record["status"], record["decided_by"], record["comment"]) == (
        "approved",
        APPROVER,
        "lgtm",
    )
    assert record["rejection_reason"] is None and record["decided_at"]
    assert approval(client, keys, approval_id) == record
    assert listed(client, keys, "pending") == []
    assert listed(client, keys, "history") == [approval_id]
    claimed = claim(client, keys)
    assert claimed.status_code == 200
    assert (claimed.json["task_id"], claimed.json["task"]["status"]) == (task_id, "in_progress")
    assert event_types(client, keys, task_id) == [
        "task.created",
        "task.awaiting_approval",
        "approval.requested",
        "approval.approved",
        "task.assigned",
        "task.in_progress",
    ]


@pytest.mark.parametrize("where", ["query", "json"])
def test_reject_cancels_the_task_with_the_reason(client, keys, where):
    task_id, approval_id = gated(client, keys)
    reason = "too risky on a Friday"
    kwargs = (
        {"query_string": {"reason": reason}}
        if where == "query"
        else {"json": {"reason": reason, "comment": "see #42"}}
    )
    response = decide(client, keys["ops"], approval_id, "reject", **kwargs)
    assert response.status_code == 200, response.json
    record, cancelled = response.json["approval"], response.json["task"]
    assert (record["status"], record["decided_by"], record["rejection_reason"]) == (
        "rejected",
        APPROVER,
        reason,
    )
    assert record["comment"] == ("see #42" if where == "json" else None)
    assert cancelled["status"] == "cancelled" and reason in cancelled["error"]
    assert task(client, keys, task_id) == cancelled
    assert claim(client, keys).status_code == 204
    assert event_types(client, keys, task_id)[-2:] == ["approval.rejected", "task.cancelled"]


def test_reject_without_reason_says_so(client, keys):
    task_id, approval_id = gated(client, keys)
    response = decide(client, keys["ops"], approval_id, "reject")
    assert response.status_code == 200
    assert response.json["approval"]["rejection_reason"] == "no reason given"
    assert task(client, keys, task_id)["error"] == "approval rejected: no reason given"


def test_comment_from_query_on_approve(client, keys):
    _, approval_id = gated(client, keys)
    response = decide(
        client, keys["ops"], approval_id, "approve", query_string={"comment": "ship it"}
    )
    assert response.status_code == 200
    assert approval(client, keys, approval_id)["comment"] == "ship it"


@pytest.mark.parametrize(
    ("verb", "field", "where"),
    [
        ("reject", "reason", "query"),
        ("reject", "reason", "json"),
        ("reject", "comment", "json"),
        ("approve", "comment", "json"),
    ],
)
def test_text_over_1000_characters_is_422(client, keys, verb, field, where):
    _, approval_id = gated(client, keys)
    kwargs = {"query_string" if where == "query" else "json": {field: "x" * 1001}}
    response = decide(client, keys["ops"], approval_id, verb, **kwargs)
    assert response.status_code == 422
    assert field in response.json["errors"]
    assert approval(client, keys, approval_id)["status"] == "pending"
    kwargs = {"query_string" if where == "query" else "json": {field: "x" * 1000}}
    assert decide(client, keys["ops"], approval_id, verb, **kwargs).status_code == 200


def test_approve_rejects_unknown_fields(client, keys):
    _, approval_id = gated(client, keys)
    response = decide(client, keys["ops"], approval_id, "approve", json={"approver": "me"})
    assert response.status_code == 422
    assert "approver" in response.json["errors"]


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_approved_by_and_approved_at_alias_the_decision(client, keys, decision):
    _, approval_id = gated(client, keys)
    record = decide(client, keys["ops"], approval_id, decision).json["approval"]
    if decision == "approve":
        assert (
            (record["approved_by"], record["approved_at"])
            == (record["decided_by"], record["decided_at"])
            == (APPROVER, record["decided_at"])
        )
    else:
        assert record["approved_by"] is None and record["approved_at"] is None
        assert record["decided_by"] == APPROVER


# --- who may decide ----------------------------------------------------------------------


def test_creator_cannot_approve_but_may_withdraw(client, keys):
    task_id, approval_id = gated(client, keys)
    refused = decide(client, keys["agent"], approval_id, "approve")
    assert refused.status_code == 403
    assert "four-eyes" in refused.json["detail"]
    assert approval(client, keys, approval_id)["status"] == "pending"
    assert task(client, keys, task_id)["status"] == "awaiting_approval"
    withdrawn = decide(
        client, keys["agent"], approval_id, "reject", json={"reason": "filed by mistake"}
    )
    assert withdrawn.status_code == 200
    assert withdrawn.json["approval"]["decided_by"] == CREATOR
    assert withdrawn.json["task"]["status"] == "cancelled"


def test_creator_is_the_principal_not_the_credential(client, keys, tokens):
    """A token for the creator's own principal is still the creator."""
    _, approval_id = gated(client, keys)
    same_principal = {"Authorization": f"Bearer {mint_token(CREATOR, 'admin')}"}
    assert decide(client, same_principal, approval_id, "approve").status_code == 403
    assert decide(client, tokens["agent"], approval_id, "approve").status_code == 200


@pytest.mark.parametrize(
    ("approver_role", "who", "status"),
    [
        ("agent", "user", 403),
        ("agent", "ops", 200),
        ("agent", "admin", 200),
        ("admin", "ops", 403),
        ("admin", "admin", 200),
    ],
)
@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_approver_role_sets_the_lowest_role_that_decides(
    make_app, keys, approver_role, who, status, verb
):
    client = make_app(ORCHESTRATOR_APPROVER_ROLE=approver_role).test_client()
    _, approval_id = gated(client, keys)
    response = decide(client, keys[who], approval_id, verb)
    assert response.status_code == status, response.json
    decided = {"approve": "approved", "reject": "rejected"}[verb]
    assert approval(client, keys, approval_id)["status"] == (
        "pending" if status == 403 else decided
    )


def test_deciding_needs_credentials(client, keys):
    _, approval_id = gated(client, keys)
    response = decide(client, {}, approval_id, "approve")
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


# --- exactly once ---------------------------------------------------------------------


@pytest.mark.parametrize("first", ["approve", "reject"])
@pytest.mark.parametrize("second", ["approve", "reject"])
def test_second_decision_is_409_with_current_state(client, keys, first, second):
    task_id, approval_id = gated(client, keys)
    assert decide(client, keys["ops"], approval_id, first).status_code == 200
    before = task(client, keys, task_id)
    response = decide(client, keys["admin"], approval_id, second)
    assert response.status_code == 409
    status = {"approve": "approved", "reject": "rejected"}[first]
    assert response.json["current_status"] == status
    assert response.json["approval"]["status"] == status
    assert response.json["approval"]["decided_by"] == APPROVER
    assert task(client, keys, task_id) == before


def test_cancelling_a_gated_task_withdraws_its_approval(client, keys):
    task_id, approval_id = gated(client, keys)
    response = client.post(
        f"/tasks/{task_id}/cancel", json={"reason": "no longer needed"}, headers=keys["ops"]
    )
    assert response.status_code == 200
    assert response.json["task"]["status"] == "cancelled"
    assert listed(client, keys, "pending") == []
    assert listed(client, keys, "history") == [approval_id]
    record = approval(client, keys, approval_id)
    assert (record["status"], record["decided_by"], record["rejection_reason"]) == (
        "rejected",
        APPROVER,
        "no longer needed",
    )
    late = decide(client, keys["admin"], approval_id, "approve")
    assert (late.status_code, late.json["current_status"]) == (409, "rejected")
    assert event_types(client, keys, task_id)[-2:] == ["approval.rejected", "task.cancelled"]


# --- not found ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "approval_id",
    [
        UNKNOWN,
        "nope",
        UNKNOWN.removeprefix("apr-"),
        UNKNOWN.upper(),
        "apr-1",
        "apr-00000000-0000-4000-8000-000000000000x",
    ],
)
@pytest.mark.parametrize(
    ("method", "suffix", "role"),
    [
        ("get", "", "user"),
        ("post", "/approve", "ops"),
        ("post", "/reject", "ops"),
    ],
)
def test_unknown_or_malformed_id_is_404(client, keys, approval_id, method, suffix, role):
    response = getattr(client, method)(f"/approvals/{approval_id}{suffix}", headers=keys[role])
    assert response.status_code == 404
    assert response.json == {"detail": "Approval not found"}


# --- expiry --------------------------------------------------------------------------------


def _touch_approve(client, keys, app, approval_id):
    response = decide(client, keys["ops"], approval_id, "approve")
    assert (response.status_code, response.json["current_status"]) == (409, "timeout")


def _touch_reject(client, keys, app, approval_id):
    response = decide(client, keys["ops"], approval_id, "reject", json={"reason": "late"})
    assert (response.status_code, response.json["current_status"]) == (409, "timeout")


def _touch_get(client, keys, app, approval_id):
    assert approval(client, keys, approval_id)["status"] == "timeout"


def _touch_pending(client, keys, app, approval_id):
    assert listed(client, keys, "pending") == []


def _touch_stats(client, keys, app, approval_id):
    assert client.get("/stats").json["approvals"] == {"pending": 0}


def _touch_sweep(client, keys, app, approval_id):
    result = app.test_cli_runner().invoke(args=["sweep"])
    assert result.exit_code == 0, result.output
    assert "0 still due" in result.output


@pytest.mark.parametrize(
    "first_touch",
    [
        _touch_approve,
        _touch_reject,
        _touch_get,
        _touch_pending,
        _touch_stats,
        _touch_sweep,
    ],
    ids=lambda touch: touch.__name__.removeprefix("_touch_"),
)
def test_expiry_applies_on_whatever_comes_first(make_app, redis_server, keys, first_touch):
    app = make_app(ORCHESTRATOR_APPROVAL_TIMEOUT="1")
    client = app.test_client()
    task_id, approval_id = gated(client, keys)
    time.sleep(1.1)
    # Nothing runs in the background: until something touches Redis it is still pending.
    assert raw(app, redis_server, "approval", approval_id)["status"] == "pending"
    first_touch(client, keys, app, approval_id)
    stored = raw(app, redis_server, "approval", approval_id)
    assert stored["status"] == "timeout" and "decided_by" not in stored
    assert raw(app, redis_server, "task", task_id)["status"] == "cancelled"

    record = approval(client, keys, approval_id)
    assert record["status"] == "timeout" and record["decided_at"]
    expired = task(client, keys, task_id)
    assert (expired["status"], expired["error"]) == ("cancelled", "approval timed out")
    late = decide(client, keys["ops"], approval_id, "approve")
    assert (late.status_code, late.json["current_status"]) == (409, "timeout")
    assert claim(client, keys).status_code == 204
    assert listed(client, keys, "history") == [approval_id]
    assert event_types(client, keys, task_id)[-2:] == ["approval.timeout", "task.cancelled"]


def test_expiry_beyond_one_settle_round_is_still_applied(make_app, keys):
    """More approvals fall due than one request settles (100): the one asked about and
    every one listed are timed out all the same."""
    client = make_app(ORCHESTRATOR_APPROVAL_TIMEOUT="1").test_client()
    approval_ids = [gated(client, keys)[1] for _ in range(105)]
    time.sleep(1.1)
    late = decide(client, keys["ops"], approval_ids[-1], "approve")
    assert (late.status_code, late.json["current_status"]) == (409, "timeout")
    assert listed(client, keys, "pending") == []
    assert approval(client, keys, approval_ids[-2])["status"] == "timeout"


# --- history ---------------------------------------------------------------------------


def test_history_is_newest_first_capped_and_limited(make_app, keys):
    client = make_app(ORCHESTRATOR_MAX_APPROVAL_HISTORY="3").test_client()
    decided = []
    for i in range(5):
        _, approval_id = gated(client, keys)
        verb = "approve" if i % 2 else "reject"
        assert decide(client, keys["ops"], approval_id, verb).status_code == 200
        decided.append(approval_id)
    newest_first = decided[::-1]
    assert listed(client, keys, "history") == newest_first[:3]
    assert listed(client, keys, "history", limit=2) == newest_first[:2]
    assert listed(client, keys, "history", limit=1000) == newest_first[:3]
    # Entries beyond the cap are gone entirely, not only from the listing.
    assert client.get(f"/approvals/{decided[0]}", headers=keys["user"]).status_code == 404
    assert approval(client, keys, decided[2])["status"] == "rejected"


def test_history_default_limit_is_100(client, keys):
    decided = []
    for _ in range(101):
        _, approval_id = gated(client, keys)
        decide(client, keys["ops"], approval_id, "reject")
        decided.append(approval_id)
    assert listed(client, keys, "history") == decided[::-1][:100]


@pytest.mark.parametrize("limit", ["0", "-1", "abc"])
def test_history_limit_must_be_a_positive_number(client, keys, limit):
    response = client.get(f"/approvals/history?limit={limit}", headers=keys["user"])
    assert response.status_code == 422
    assert "limit" in response.json["errors"]


def test_history_entries_expire_after_their_ttl(make_app, keys):
    client = make_app(ORCHESTRATOR_APPROVAL_HISTORY_TTL="1").test_client()
    task_id, approval_id = gated(client, keys)
    decide(client, keys["ops"], approval_id, "approve")
    assert listed(client, keys, "history") == [approval_id]
    time.sleep(1.1)
    assert client.get(f"/approvals/{approval_id}", headers=keys["user"]).status_code == 404
    assert listed(client, keys, "history") == []
    assert task(client, keys, task_id)["status"] == "assigned"  # the task lives on


# --- readers and counters ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/approvals/pending",
        "/approvals/history",
        f"/approvals/{UNKNOWN}",
    ],
)
def test_reading_needs_credentials(client, path):
    response = client.get(path)
    assert response.status_code == 401


def test_stats_and_health_count_pending_approvals(client, keys):
    _, first = gated(client, keys)
    gated(client, keys, type="deploy")
    client.post("/tasks", json={"type": "bugfix"}, headers=keys["agent"])
    stats = client.get("/stats").json
    assert stats["approvals"] == {"pending": 2}
    assert stats["tasks"]["awaiting_approval"] == 2
    assert (stats["queue"]["awaiting_approval"], stats["queue"]["pending"]) == (2, 1)
    health = client.get("/health").json
    assert (health["queue_stats"]["awaiting_approval"], health["approvals_pending"]) == (2, 2)
    decide(client, keys["ops"], first, "approve")
    stats = client.get("/stats").json
    assert stats["approvals"] == {"pending": 1}
    assert (stats["queue"]["awaiting_approval"], stats["queue"]["pending"]) == (1, 2)
    health = client.get("/health").json
    assert (health["queue_stats"]["awaiting_approval"], health["approvals_pending"]) == (1, 1)


# --- across instances and restarts --------------------------------------------------------


def test_instances_sharing_redis_share_the_gate(make_app, keys):
    prefix = "shared-gate-" + str(time.time_ns())
    one = make_app(ORCHESTRATOR_QUEUE_PREFIX=prefix).test_client()
    two = make_app(ORCHESTRATOR_QUEUE_PREFIX=prefix).test_client()
    task_id, approval_id = gated(one, keys)
    assert claim(two, keys).status_code == 204
    assert listed(two, keys, "pending") == [approval_id]
    assert decide(two, keys["ops"], approval_id, "approve").status_code == 200
    assert decide(one, keys["admin"], approval_id, "reject").status_code == 409
    assert claim(one, keys).json["task_id"] == task_id


def test_gate_survives_a_redis_restart(make_app, own_redis, keys):
    client = make_app(redis_url=own_redis.url).test_client()
    task_id, approval_id = gated(client, keys)
    own_redis.stop()
    own_redis.start()
    assert claim(client, keys).status_code == 204
    assert task(client, keys, task_id)["status"] == "awaiting_approval"
    assert listed(client, keys, "pending") == [approval_id]
    assert decide(client, keys["ops"], approval_id, "approve").status_code == 200
    assert claim(client, keys).json["task_id"] == task_id
