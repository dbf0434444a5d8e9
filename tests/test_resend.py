"""Writes whose reply was lost on the way back: redis-py sends the command again on a new
connection (its retry on ConnectionError), although Redis already ran it. Each write
still runs once: a create finds the task its first run stored, the other writes answer
their first reply, kept under the call's id (lib.lua, once)."""

from __future__ import annotations

import pytest
import redis

from app.domain.keys import SENT_ONCE_MS
from app.services import services
from tests.helpers import redis_keys


@pytest.fixture
def lose_next_reply(monkeypatch):
    """Once armed, the next script call's reply is read (so Redis ran it), `meanwhile`
    runs, and the call then fails as if the connection had dropped before the reply."""
    state = {"armed": False, "lost": 0, "meanwhile": None}
    send_and_parse = redis.Redis._send_command_parse_response

    def losing(self, conn, command_name, *args, **options):
        reply = send_and_parse(self, conn, command_name, *args, **options)
        if state["armed"] and command_name == "EVALSHA":
            state["armed"] = False
            state["lost"] += 1
            if state["meanwhile"]:
                state["meanwhile"]()
            raise redis.ConnectionError("connection dropped before the reply arrived")
        return reply

    monkeypatch.setattr(redis.Redis, "_send_command_parse_response", losing)
    return state


def stored(raw, app, task_id: str) -> dict:
    """What the store holds of the request: sequence, task keys, queue, events."""
    key = redis_keys(app)
    return {
        "seq": raw.get(key.name("seq")),
        "tasks": len(raw.keys(key.task("*"))),
        "queued": raw.zrange(key.queue("dev_agent"), 0, -1),
        "events": [fields["type"] for _, fields in raw.xrange(key.name("events"))],
        "status": raw.hget(key.task(task_id), "status"),
    }


def test_a_resent_create_makes_one_task(app, api, redis_server, lose_next_reply):
    lose_next_reply["armed"] = True
    response = api.client.post("/tasks", headers=api.headers["agent"], json={"type": "bugfix"})

    assert lose_next_reply["lost"] == 1  # the create's one script call was sent twice
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers  # the client asked once
    body = response.json
    assert body["task"]["status"] == "assigned"
    assert body["message"] == "Task created and assigned to dev_agent"
    assert stored(redis_server.client(), app, body["task_id"]) == {
        "seq": "1",
        "tasks": 1,
        "queued": [body["task_id"]],
        "events": ["task.created", "task.assigned"],
        "status": "assigned",
    }


def claim_meanwhile(app, lose_next_reply) -> dict:
    """Arm the lost reply so another principal claims the task before the resend; the
    claimed task is filled into the dict returned, once that happened."""
    claimed: dict = {}

    def claim_it():
        with app.app_context():
            reply = services().tasks.scripts.claim_task(
                agent="dev_agent", lease_ms=60_000, principal="apikey:other"
            )
        claimed.update(reply["task"])

    lose_next_reply.update(armed=True, meanwhile=claim_it)
    return claimed


def test_a_task_claimed_before_its_create_is_resent_is_not_queued_again(
    app, api, redis_server, lose_next_reply
):
    claimed = claim_meanwhile(app, lose_next_reply)
    response = api.client.post("/tasks", headers=api.headers["agent"], json={"type": "bugfix"})

    assert response.status_code == 201
    task_id = response.json["task_id"]
    assert claimed["task_id"] == task_id
    # The answer is the task as it is now: running under the lease taken meanwhile.
    assert response.json["task"]["status"] == "in_progress"
    assert response.json["task"]["claimed_by"] == "apikey:other"
    assert stored(redis_server.client(), app, task_id) == {
        "seq": "1",
        "tasks": 1,
        "queued": [],
        "events": ["task.created", "task.assigned", "task.in_progress"],
        "status": "in_progress",
    }
    assert api.claim(expect=204) is None  # nothing left to hand out a second time


def test_a_resent_claim_hands_out_one_task(app, api, redis_server, lose_next_reply):
    first, second = api.create()["task_id"], api.create()["task_id"]
    lose_next_reply["armed"] = True

    claimed = api.claim()

    assert lose_next_reply["lost"] == 1
    assert claimed["task"]["task_id"] == first and claimed["task"]["status"] == "in_progress"
    held = stored(redis_server.client(), app, first)
    assert held["queued"] == [second]  # the second task was not leased by the re-send
    assert held["events"].count("task.in_progress") == 1
    assert api.task(second)["status"] == "assigned"


def test_an_empty_claim_keeps_no_reply_and_its_resend_runs_afresh(
    app, api, redis_server, lose_next_reply
):
    raw, key = redis_server.client(), redis_keys(app)
    assert api.claim(expect=204) is None
    # An idle poll changed nothing a second run would redo: no reply is kept for it.
    assert raw.keys(key.name("call", "*")) == []

    # Its reply lost, the re-send finds the task created meanwhile and hands it out, as a
    # new claim would: the first run had handed out nothing.
    lose_next_reply["armed"] = True
    created = {}
    lose_next_reply["meanwhile"] = lambda: created.update(api.create())
    claimed = api.claim()

    assert lose_next_reply["lost"] == 1
    assert claimed["task"]["task_id"] == created["task_id"]
    assert claimed["task"]["status"] == "in_progress"
    held = stored(raw, app, created["task_id"])
    assert (held["queued"], held["events"].count("task.in_progress")) == ([], 1)
    assert len(raw.keys(key.name("call", "*"))) == 1  # the claim that handed it out


def test_a_resent_status_change_answers_as_the_first_run(app, api, redis_server, lose_next_reply):
    task_id = api.create()["task_id"]
    api.claim()
    lose_next_reply["armed"] = True

    done = api.status(task_id, "completed")  # not a 409 "Task is completed"

    assert lose_next_reply["lost"] == 1
    assert done["task"]["status"] == "completed"
    assert stored(redis_server.client(), app, task_id)["events"].count("task.completed") == 1


def test_a_resent_event_is_published_once(app, api, redis_server, lose_next_reply):
    raw, key = redis_server.client(), redis_keys(app)
    lose_next_reply["armed"] = True
    body = {"event_type": "deploy.finished", "source_agent": "ops_agent", "payload": {}}

    published = api.call("POST", "/events/publish", as_="agent", expect=201, json=body)

    assert lose_next_reply["lost"] == 1
    assert [event_id for event_id, _ in raw.xrange(key.name("events"))] == [published["event_id"]]
    # The first reply is kept only as long as a client's retries take.
    calls = raw.keys(key.name("call", "*"))
    assert len(calls) == 1 and 0 < raw.pttl(calls[0]) <= SENT_ONCE_MS


def test_a_resent_claim_is_not_refused_for_the_hit_its_first_run_took(
    make_app, api, redis_server, lose_next_reply
):
    # One claim a minute: the first run takes the window's only slot and leases the task.
    app = make_app(ORCHESTRATOR_RATE_LIMIT_AGENT_OPS="1")
    api = api.using(app.test_client())
    task_id = api.create()["task_id"]
    lose_next_reply["armed"] = True

    response = api.client.post(
        "/tasks/claim", headers=api.headers["agent"], json={"agent": "dev_agent"}
    )

    assert lose_next_reply["lost"] == 1
    # The re-send answers the first run's reply: the lease it took is the caller's, not a
    # 429 for a task leased to nobody who knows it (until the lease expires as a retry).
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["task_id"] == task_id and response.json["lease_token"] == 1
    assert response.headers["X-RateLimit-Remaining"] == "0"  # counted once
    assert api.claim(expect=429)["detail"].startswith("Rate limit exceeded")


def test_a_resent_create_is_not_refused_for_the_hit_its_first_run_took(
    make_app, api, redis_server, lose_next_reply
):
    # One create a minute: the first run takes the window's only slot and stores the task.
    app = make_app(ORCHESTRATOR_RATE_LIMIT_TASKS="1")
    api = api.using(app.test_client())
    lose_next_reply["armed"] = True

    response = api.client.post("/tasks", headers=api.headers["agent"], json={"type": "bugfix"})

    assert lose_next_reply["lost"] == 1
    # A 429 here would tell the client nothing was created, and its retry would make the
    # task a second time.
    assert response.status_code == 201, response.get_data(as_text=True)
    assert stored(redis_server.client(), app, response.json["task_id"])["tasks"] == 1
    assert response.headers["X-RateLimit-Remaining"] == "0"  # counted once
    assert api.create(expect=429)["detail"].startswith("Rate limit exceeded")


def test_a_resent_create_with_an_idempotency_key_is_no_replay(
    app, api, redis_server, lose_next_reply
):
    claimed = claim_meanwhile(app, lose_next_reply)
    headers = {**api.headers["agent"], "Idempotency-Key": "asked-once"}
    response = api.client.post("/tasks", headers=headers, json={"type": "bugfix"})

    assert lose_next_reply["lost"] == 1
    assert response.status_code == 201
    # The client asked once: its own create, answered as the task is now (as without a
    # key), not the replay of an earlier request's first answer.
    assert "Idempotent-Replayed" not in response.headers
    assert response.json["task_id"] == claimed["task_id"]
    assert response.json["task"]["status"] == "in_progress"
    # Asked again, the key replays the first answer, as it always does.
    again = api.client.post("/tasks", headers=headers, json={"type": "bugfix"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["task_id"] == response.json["task_id"]
    assert stored(redis_server.client(), app, response.json["task_id"])["tasks"] == 1
