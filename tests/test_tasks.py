"""The task endpoints on a real Redis: create, validation, routing, idempotency, listing,
claims, cancel, 404s, and how many Redis round trips each hot path costs."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from datetime import timedelta

import pytest

from app.domain.model import DEFAULT_ROUTES, PRIORITIES
from app.domain.records import stamp, task_record
from app.domain.task_fields import stored_fields
from app.services import current_settings, services
from tests.conftest import PRINCIPALS
from tests.helpers import PLAIN_TASK, parse_time, redis_keys

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


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
    assert uuid.UUID(task["task_id"]).version == 4
    # Every field, and no other: the generated id and times are checked on their own.
    assert task | {"task_id": None, "created_at": None, "updated_at": None, "sla": None} == {
        "task_id": None,
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
        "approval": None,  # the receipt, once people approved the task
        "lease_token": None,
        "run_at": None,
        "depends_on": None,
    }
    assert ISO_UTC.match(task["created_at"]) and ISO_UTC.match(task["updated_at"])
    assert task["sla"]["target"] == "24h" and ISO_UTC.match(task["sla"]["deadline"])
    assert parse_time(task["sla"]["deadline"]) - parse_time(task["created_at"]) == timedelta(
        hours=24
    )
    fetched = client.get(response.headers["Location"], headers=keys["user"])
    assert fetched.status_code == 200
    assert fetched.json == {"success": True, "task_id": task["task_id"], "task": task}


def test_create_keeps_what_the_caller_sent(api, tokens):
    parent = api.create()["task_id"]
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
    task = api.create(**body, as_=tokens["agent"])["task"]
    assert {name: task[name] for name in body if name != "sla_deadline"} == {
        name: value for name, value in body.items() if name != "sla_deadline"
    }
    assert task["sla"]["deadline"] == "2031-02-03T04:05:06.000Z"
    assert task["created_by"] == "jwt-agent"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ({}, {}),
        (
            {"source": "github", "trace_id": "trace-1", "metadata": {"a": 1}, "max_retries": 5},
            {"source": "github", "trace_id": "trace-1", "metadata": '{"a": 1}', "max_retries": "5"},
        ),
    ],
)
def test_a_task_stores_no_field_at_its_default_and_shows_every_one(app, api, given, stored):
    """Redis memory: every task would repeat source, metadata, trace_id (= its id),
    retry_count and max_retries at their defaults, so only other values are stored."""
    created = api.create(type="faq", priority="P3", **given)["task"]
    raw = app.extensions["orchestrator.redis"].hgetall(redis_keys(app).task(created["task_id"]))
    optional = ("source", "metadata", "trace_id", "retry_count", "max_retries")

    assert {name: raw[name] for name in optional if name in raw} == stored
    defaults = {
        "source": "api",
        "metadata": {},
        "trace_id": created["task_id"],
        "retry_count": 0,
        "max_retries": 3,
    }
    expected = defaults | given
    assert {name: created[name] for name in optional} == expected
    assert api.task(created["task_id"]) == created


def test_the_default_sla_is_not_stored_but_shown_from_priority_and_creation(app, api):
    """A task whose creator gave no SLA has its priority's: derived, so not stored (about
    70 bytes a task); a given SLA is stored and shown as given."""
    raw = app.extensions["orchestrator.redis"]
    keys = redis_keys(app)
    default = api.create(type="faq", priority="P1")["task"]
    assert "sla" not in raw.hgetall(keys.task(default["task_id"]))
    assert default["sla"]["target"] == "4h" and ISO_UTC.match(default["sla"]["deadline"])
    due = parse_time(default["created_at"]) + timedelta(hours=4)
    assert parse_time(default["sla"]["deadline"]) == due
    assert api.task(default["task_id"])["sla"] == default["sla"]

    given = api.create(type="faq", priority="P1", sla={"target": "2h"})["task"]
    stored = raw.hget(keys.task(given["task_id"]), "sla")
    assert json.loads(stored) == given["sla"] and given["sla"]["target"] == "2h"
    # A target in words only: the deadline is still the priority's, from creation.
    assert parse_time(given["sla"]["deadline"]) - parse_time(given["created_at"]) == timedelta(
        hours=4
    )


def test_a_default_sla_deadline_crosses_days_and_years_on_the_redis_clock():
    from app.domain.records import default_sla

    assert default_sla("P0", "2026-12-31T23:30:00.250Z") == {
        "target": "1h",
        "deadline": "2027-01-01T00:30:00.250Z",
    }
    assert default_sla("P3", "2028-02-27T12:00:00.000Z")["deadline"] == "2028-03-01T12:00:00.000Z"
    assert default_sla(None, "2026-12-31T23:30:00.250Z") is None  # a partial hash


def test_a_task_stores_its_id_only_in_its_key_and_reads_older_hashes_alike(app, api):
    """The id is the key's: the hash does not repeat it (36 bytes a task), every answer
    still carries it, and a hash an older release wrote with the id inside reads alike."""
    raw = app.extensions["orchestrator.redis"]
    created = api.create(type="faq", priority="P3")["task"]
    task_key = redis_keys(app).task(created["task_id"])
    assert "task_id" not in raw.hgetall(task_key)
    assert api.task(created["task_id"])["task_id"] == created["task_id"]
    claimed = api.claim(agent="faq_agent")["task"]
    assert claimed["task_id"] == created["task_id"]

    raw.hset(task_key, "task_id", created["task_id"])  # as written before
    assert api.task(created["task_id"]) == claimed
    done = api.status(created["task_id"], "completed")["task"]
    assert done["task_id"] == created["task_id"] and done["status"] == "completed"


def test_updated_at_is_stored_only_once_a_later_millisecond_changes_the_task(app, api, keys):
    """Redis memory: a task nobody changed since its creation would repeat its creation
    time as updated_at (64 B a queued task), so its hash keeps updated_at only once a
    later millisecond changed the task; every answer shows it either way."""
    raw, key = app.extensions["orchestrator.redis"], redis_keys(app)
    headers = {**keys["agent"], "Idempotency-Key": "updated-at-1"}
    created = api.client.post("/tasks", json=PLAIN_TASK, headers=headers).json["task"]
    task_key = key.task(created["task_id"])
    assert "updated_at" not in raw.hgetall(task_key)
    assert created["updated_at"] == created["created_at"]
    assert api.task(created["task_id"]) == created
    assert api.call("GET", "/tasks")["tasks"] == [created]
    record = json.loads(raw.get(key.idempotency(PRINCIPALS["agent"], "updated-at-1")))
    assert "updated_at" not in record["snapshot"]
    replayed = api.client.post("/tasks", json=PLAIN_TASK, headers=headers)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json["task"] == created

    time.sleep(0.002)  # Redis' clock too: the claim is a later millisecond
    claimed = api.claim()["task"]
    assert claimed["updated_at"] == claimed["started_at"] > created["created_at"]
    assert raw.hget(task_key, "updated_at") == claimed["updated_at"]
    assert api.task(created["task_id"]) == claimed
    assert api.call("GET", "/tasks")["tasks"] == [claimed]


def test_a_change_in_the_creation_millisecond_stores_no_updated_at(app):
    """Create, claim and heartbeat sent together often share a millisecond: then nothing
    stores updated_at, and one already stored (a clock stepped back could leave one) is
    deleted rather than shown. In a later millisecond the change's time is stored."""
    raw, key, stale = (
        app.extensions["orchestrator.redis"],
        redis_keys(app),
        "2001-01-01T00:00:00.000Z",
    )
    principal, same_ms = PRINCIPALS["agent"], {"claim": 0, "heartbeat": 0}
    with app.app_context():
        scripts, settings = services().tasks.scripts, current_settings()
        for _ in range(300):
            fields, sla_ms = stored_fields({**PLAIN_TASK}, str(uuid.uuid4()), principal, settings)
            task_key = key.task(fields["task_id"])
            with raw.pipeline(transaction=True) as pipe:
                scripts.queue(pipe, "create_task", task=fields, sla_target_ms=sla_ms)
                pipe.hset(task_key, "updated_at", stale)
                scripts.queue(
                    pipe, "claim_task", agent="dev_agent", lease_ms=60_000, principal=principal
                )
                pipe.hget(task_key, "updated_at")
                pipe.hset(task_key, "updated_at", stale)
                scripts.queue(
                    pipe, "heartbeat_task", task_id=fields["task_id"], principal=principal
                )
                pipe.hget(task_key, "updated_at")
                created, _, claimed, after_claim, _, beat, after_beat = pipe.execute()
            created_at = json.loads(created)["task"]["created_at"]
            claimed, beat = json.loads(claimed)["task"], json.loads(beat)["task"]
            beat_at = stamp(parse_time(beat["lease_expires_at"]) - timedelta(seconds=60))
            for change, at, stored, reply in (
                ("claim", claimed["started_at"], after_claim, claimed),
                ("heartbeat", beat_at, after_beat, beat),
            ):
                same = at == created_at
                same_ms[change] += same
                assert stored == (None if same else at)
                assert task_record(reply)["updated_at"] == at
            if all(same_ms.values()):
                break
    assert all(same_ms.values()), same_ms  # each change met its creation millisecond once


def test_gated_task_waits_for_approval_and_names_it(api):
    body = api.create(priority="P0")
    assert body["task"]["status"] == "awaiting_approval"
    assert body["approval_id"] == body["task"]["approval_id"] == f"apr-{body['task_id']}"
    assert body["message"] == f"Task created; awaiting approval {body['approval_id']}"
    api.claim(expect=204)  # never claimable while gated


VALID_TYPES = ", ".join(DEFAULT_ROUTES)
PRIORITY_LIST = ", ".join(PRIORITIES)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"type": "nope"}, "type", f"Must be one of: {VALID_TYPES}."),
        ({}, "type", "Missing data for required field."),
        ({"type": 7}, "type", "Not a valid string."),
        ({"type": "bugfix", "priority": "P4"}, "priority", f"Must be one of: {PRIORITY_LIST}."),
        ({"type": "bugfix", "priority": "p1"}, "priority", f"Must be one of: {PRIORITY_LIST}."),
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


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sla_deadline": "0001-01-01T00:00:00+01:00"}, "sla_deadline"),
        ({"sla_deadline": "9999-12-31T23:59:59-01:00"}, "sla_deadline"),
        ({"sla": {"deadline": "0001-01-01T00:30:00+01:00"}}, "sla"),
    ],
)
def test_an_sla_deadline_with_no_utc_time_is_422(client, keys, body, field):
    # A valid ISO 8601 time whose UTC instant falls outside years 1-9999: it was a 500.
    response = client.post("/tasks", json={**PLAIN_TASK, **body}, headers=keys["agent"])
    assert response.status_code == 422, response.get_data(as_text=True)
    assert list(response.json["errors"]) == [field]
    assert client.get("/stats").json["tasks"]["assigned"] == 0


def test_naive_sla_deadline_is_read_as_utc(api):
    task = api.create(sla_deadline="2031-02-03T04:05:06")["task"]
    assert task["sla"]["deadline"] == "2031-02-03T04:05:06.000Z"


@pytest.mark.parametrize(("role", "status"), [("user", 403), (None, 401)])
def test_create_needs_the_agent_role(api, role, status):
    assert api.create(as_=role, expect=status)["detail"]


# --- routing -----------------------------------------------------------------------------


@pytest.mark.parametrize(("task_type", "agent"), sorted(DEFAULT_ROUTES.items()))
def test_every_type_routes_to_its_default_agent(api, task_type, agent):
    task = api.create(type=task_type, payload={"environment": "staging"})["task"]
    assert (task["assigned_to"], task["status"]) == (agent, "assigned")
    assert api.claim(agent)["task_id"] == task["task_id"]


def test_routing_rules_override_the_table(make_app, api):
    api = api.using(
        make_app(ORCHESTRATOR_ROUTING_RULES="bugfix=ops_agent, faq=special_agent").test_client()
    )
    moved = api.create(type="bugfix")["task"]
    special = api.create(type="faq")["task"]
    unchanged = api.create(type="investigate")["task"]
    assert [moved["assigned_to"], special["assigned_to"], unchanged["assigned_to"]] == [
        "ops_agent",
        "special_agent",
        "dev_agent",
    ]
    assert api.claim("special_agent")["task_id"] == special["task_id"]
    assert api.claim("ops_agent")["task_id"] == moved["task_id"]
    assert api.claim("dev_agent")["task_id"] == unchanged["task_id"]
    assert api.stats()["agents"] == {
        "dev_agent": 0,
        "ops_agent": 0,
        "special_agent": 0,
    }


def test_listings_by_type_and_agent_span_a_routing_change(app, make_app, api, keys):
    """A type's tasks stay listed under the agent each was routed to when created, after
    the routing table sends the type elsewhere: its listing merges both routes."""
    before = [api.create(type=t)["task_id"] for t in ("faq", "bugfix", "faq", "documentation")]
    rerouted = make_app(
        ORCHESTRATOR_QUEUE_PREFIX=redis_keys(app).prefix,
        ORCHESTRATOR_ROUTING_RULES="faq=dev_agent",
    ).test_client()
    after = [api.using(rerouted).create(type=t)["task_id"] for t in ("faq", "bugfix", "faq")]
    old_faq, old_bugfix, old_faq2, docs = before
    new_faq, new_bugfix, new_faq2 = after
    user = keys["user"]
    # Newest first across both routes, the same on one page or over pages of two.
    faq = [new_faq2, new_faq, old_faq2, old_faq]
    assert list_ids(rerouted, user, "type=faq") == faq
    assert walk_pages(rerouted, user, "type=faq", 2) == (faq, 2)
    dev = [new_faq2, new_bugfix, new_faq, old_bugfix]
    assert list_ids(rerouted, user, "assigned_to=dev_agent") == dev
    assert walk_pages(rerouted, user, "assigned_to=dev_agent", 3) == (dev, 2)
    assert list_ids(rerouted, user, "assigned_to=faq_agent") == [docs, old_faq2, old_faq]
    assert list_ids(rerouted, user, "type=faq&assigned_to=faq_agent") == [old_faq2, old_faq]
    assert list_ids(rerouted, user, "type=faq&status=assigned&limit=3") == faq[:3]
    assert list_ids(rerouted, user, "type=deploy") == []


# --- idempotency -------------------------------------------------------------------------


def test_repeated_idempotency_key_replays_status_and_body(client, keys, api):
    headers = {**keys["agent"], "Idempotency-Key": "order-42"}
    first = client.post("/tasks", json=PLAIN_TASK, headers=headers)
    assert first.status_code == 201 and first.json["task"]["status"] == "assigned"
    # The task moves on; the replay still answers what the first request got.
    api.claim()
    again = client.post("/tasks", json=PLAIN_TASK, headers=headers)
    assert (again.status_code, again.json) == (201, first.json)
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert list_ids(client, keys["user"]) == [first.json["task_id"]]


def test_idempotency_key_with_a_different_body_is_422(client, keys):
    headers = {**keys["agent"], "Idempotency-Key": "order-43"}
    first = client.post("/tasks", json=PLAIN_TASK, headers=headers)
    other = client.post("/tasks", json={**PLAIN_TASK, "payload": {"x": 1}}, headers=headers)
    assert first.status_code == 201
    assert other.status_code == 422
    assert other.json == {
        "detail": "Idempotency-Key was already used with a different request body",
        "errors": {"Idempotency-Key": ["Reused with a different body."]},
    }
    assert list_ids(client, keys["user"]) == [first.json["task_id"]]


def test_the_same_instant_in_another_offset_is_the_same_request(client, keys):
    """A client retrying with its run time or deadline written in another offset (Z vs
    +01:00) sends the same request: it replays, it is no 'different body' (a 422 once)."""
    headers = {**keys["agent"], "Idempotency-Key": "order-offsets"}
    body = {**PLAIN_TASK, "sla_deadline": "2030-01-01T09:00:00Z"}
    first = client.post("/tasks", json=body, headers=headers)
    shifted = {**body, "sla_deadline": "2030-01-01T10:00:00+01:00"}
    again = client.post("/tasks", json=shifted, headers=headers)
    assert first.status_code == 201
    assert (again.status_code, again.json) == (201, first.json)
    assert again.headers["Idempotent-Replayed"] == "true"
    later = {**body, "sla_deadline": "2030-01-01T10:00:00Z"}  # another instant
    assert client.post("/tasks", json=later, headers=headers).status_code == 422


def test_idempotency_record_is_kept_for_24_hours(app, client, keys, redis_server):
    """A retry within a day replays the first answer (README.md, POST /tasks)."""
    headers = {**keys["agent"], "Idempotency-Key": "order-44"}
    assert client.post("/tasks", json=PLAIN_TASK, headers=headers).status_code == 201
    record = redis_keys(app).idempotency(PRINCIPALS["agent"], "order-44")
    assert 86400 - 60 <= redis_server.client().ttl(record) <= 86400


def test_idempotency_keys_belong_to_one_principal(client, keys):
    mine = client.post("/tasks", json=PLAIN_TASK, headers={**keys["agent"], "Idempotency-Key": "k"})
    theirs = client.post("/tasks", json=PLAIN_TASK, headers={**keys["ops"], "Idempotency-Key": "k"})
    assert mine.status_code == theirs.status_code == 201
    assert mine.json["task_id"] != theirs.json["task_id"]
    assert theirs.json["task"]["created_by"] == PRINCIPALS["ops"]
    assert "Idempotent-Replayed" not in theirs.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "caf\u00e9"])
def test_malformed_idempotency_key_is_422(client, keys, key):
    headers = {**keys["agent"], "Idempotency-Key": key.encode().decode("latin-1")}
    response = client.post("/tasks", json=PLAIN_TASK, headers=headers)
    assert response.status_code == 422
    assert response.json["errors"] == {"Idempotency-Key": ["1-255 printable ASCII characters."]}


# --- reading and listing -----------------------------------------------------------------


def test_list_pages_visit_every_task_once_newest_first(client, keys, api):
    created = [api.create()["task_id"] for _ in range(7)]
    seen, pages = walk_pages(client, keys["user"], "", limit=3)
    assert seen == created[::-1]
    assert pages == 3
    first = client.get("/tasks", headers=keys["user"]).json
    assert (first["success"], first["count"], first["next_cursor"]) == (True, 7, None)


def test_list_filters_by_status_type_and_agent(client, keys, api):
    bug = api.create()["task_id"]
    faq = api.create(type="faq")["task_id"]
    alert = api.create(type="alert")["task_id"]
    gated = api.create(priority="P0")["task_id"]
    running = api.claim("faq_agent")["task_id"]
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


def test_list_limit_defaults_to_100(client, keys, api):
    created = [api.create()["task_id"] for _ in range(101)]
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


def test_status_comes_from_query_or_body_with_error(client, keys, api):
    by_query = api.create()["task_id"]
    by_body = api.create()["task_id"]
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
def test_status_update_validation(client, keys, api, query, body, field):
    task_id = api.create()["task_id"]
    response = client.patch(f"/tasks/{task_id}/status?{query}", json=body, headers=keys["agent"])
    assert response.status_code == 422
    assert field in response.json["errors"]
    assert api.task(task_id)["status"] == "assigned"


def test_status_update_needs_the_agent_role(api):
    task_id = api.create()["task_id"]
    api.status(task_id, "completed", as_="user", expect=403)
    assert api.task(task_id)["status"] == "assigned"


@pytest.mark.parametrize("setup", ["assigned", "in_progress", "awaiting_approval"])
def test_cancel_stops_a_task_that_has_not_finished(api, setup):
    task_id = api.create(priority="P0" if setup == "awaiting_approval" else "P3")["task_id"]
    if setup == "in_progress":
        api.claim()
    cancelled = api.cancel(task_id, reason="not needed")
    assert cancelled["message"] == "Task cancelled"
    assert (cancelled["task"]["status"], cancelled["task"]["error"]) == ("cancelled", "not needed")
    stats = api.stats()
    assert stats["tasks"]["cancelled"] == 1 and stats["tasks"][setup] == 0
    assert stats["approvals"] == {"pending": 0}
    api.claim(expect=204)
    assert api.cancel(task_id, expect=409) == {
        "detail": "Task is cancelled; cannot move it to cancelled",
        "current_status": "cancelled",
    }


def test_claim_hands_out_the_task_with_a_lease(client, keys, api):
    task_id = api.create()["task_id"]
    claimed = api.claim(as_="ops", lease_seconds=60)
    task = claimed["task"]
    assert claimed["task_id"] == task_id
    assert (task["status"], task["claimed_by"]) == ("in_progress", PRINCIPALS["ops"])
    assert ISO_UTC.match(task["started_at"]) and ISO_UTC.match(task["lease_expires_at"])
    assert claimed["message"] == f"Task claimed until {task['lease_expires_at']}"
    empty = client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=keys["ops"])
    assert (empty.status_code, empty.get_data()) == (204, b"")
    stats = api.stats()
    assert stats["queue"]["pending"] == 0 and stats["queue"]["in_progress"] == 1


def test_claims_take_highest_priority_first_then_oldest(make_app, api):
    # Priority gating off, so P0 and P1 tasks are queued at once.
    api = api.using(make_app(ORCHESTRATOR_HITL_PRIORITIES="none").test_client())
    order = ["P3", "P2", "P0", "P2", "P1", "P3", "P0", "P1"]
    created = [(api.create(priority=p)["task_id"], p) for p in order]
    expected = [task_id for task_id, _ in sorted(created, key=lambda item: item[1])]
    claimed = [api.claim()["task_id"] for _ in order]
    assert claimed == expected  # sorted() is stable: FIFO within a priority
    api.claim(expect=204)


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
def test_claim_validation(api, body, field):
    api.create()
    refused = api.call("POST", "/tasks/claim", as_="agent", expect=422, json=body)
    assert list(refused["errors"]) == [field]
    assert api.stats()["queue"]["pending"] == 1


def test_claim_needs_the_agent_role(api):
    api.create()
    api.claim(as_="user", expect=403)
    assert api.stats()["queue"]["pending"] == 1


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
def test_hot_paths_cost_one_round_trip(make_app, keys, api, redis_server, path):
    client = make_app(ORCHESTRATOR_RATE_LIMIT_EXEMPT="apikey:agent").test_client()
    api, headers = api.using(client), keys["agent"]
    task_ids = [api.create()["task_id"] for _ in range(3)]
    api.claim()  # warm-up: the claim script is loaded now
    api.task(task_ids[0])  # and the read script
    calls = {
        "POST /tasks": lambda: client.post("/tasks", json=PLAIN_TASK, headers=headers),
        "POST /tasks/claim": lambda: client.post(
            "/tasks/claim", json={"agent": "dev_agent"}, headers=headers
        ),
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
