"""The event bus on a real Redis: publish, replay, live fan-out, trimming, paging, limits."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from app.domain.events import WELL_KNOWN_TYPES, envelope_of
from app.domain.model import CREATED_PAYLOAD, EVENT_PRIORITIES
from tests.helpers import redis_keys

EVENT_ID = re.compile(r"^\d+-\d+$")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MAX_ID = f"{2**64 - 1}-{2**64 - 1}"

# Values JSON carries exactly only if nobody on the way re-encodes them lossily.
RICH_PAYLOAD = {
    "text": 'héllo 世界 🚀 \u0000 "quoted" \\ back',
    "big": 2**70 + 1,
    "negative": -(2**63),
    "float": 0.1 + 0.2,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "nested": {"list": [1, [2, [3, {"deep": None}]], True, False], "empty": {}, "none": None},
    "emoji_key_🔑": "value",
}


def stream_len(app) -> int:
    return app.extensions["orchestrator.redis"].xlen(redis_keys(app).name("events"))


def publish(client, headers, **body):
    body.setdefault("source_agent", "dev_agent")
    body.setdefault("payload", {})
    return client.post("/events/publish", json=body, headers=headers)


def publish_ok(client, headers, **body) -> str:
    response = publish(client, headers, **body)
    assert response.status_code == 201, response.json
    return response.json["event_id"]


def read(client, headers, **query) -> dict:
    response = client.get("/events", query_string=query, headers=headers)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["success"] is True and body["count"] == len(body["events"])
    return body


def ids(body: dict) -> list[str]:
    return [event["event_id"] for event in body["events"]]


def ms_of(event_id: str) -> int:
    return int(event_id.split("-")[0])


# Publish and replay ------------------------------------------------------------------


def test_publish_then_replay_returns_every_field(app, client, keys):
    task_id = str(uuid.uuid4())
    metadata = {"team": "ops", "labels": ["ü", {"x": 1.5}], "count": 10**20}
    response = publish(
        client,
        keys["agent"],
        event_type="deploy.succeeded",
        source_agent="ops_agent",
        task_id=task_id,
        trace_id="trace-42",
        priority="P1",
        payload=RICH_PAYLOAD,
        metadata=metadata,
    )

    assert response.status_code == 201
    event_id = response.json["event_id"]
    assert EVENT_ID.match(event_id)
    assert response.json == {
        "success": True,
        "event_id": event_id,
        "event_type": "deploy.succeeded",
        "message": "Event published",
    }

    stored = read(client, keys["user"])
    assert stored["count"] == 1 and stored["next"] is None
    event = stored["events"][0]
    timestamp = event.pop("timestamp")
    assert event == {
        "event_id": event_id,
        "event_type": "deploy.succeeded",
        "source_agent": "ops_agent",
        "published_by": "apikey:agent",
        "task_id": task_id,
        "trace_id": "trace-42",
        "priority": "high",
        "payload": RICH_PAYLOAD,
        "metadata": metadata,
    }
    assert ISO_UTC.match(timestamp)
    # Stamped by Redis' clock as the script starts, just before XADD takes the id.
    parsed = datetime.fromisoformat(timestamp)
    assert parsed.tzinfo == UTC
    assert 0 <= ms_of(event_id) - round(parsed.timestamp() * 1000) < 1000
    assert stream_len(app) == 1


def test_metadata_defaults_to_empty_object_and_task_id_to_null(client, keys):
    publish_ok(client, keys["agent"], event_type="agent.heartbeat")
    event = read(client, keys["user"])["events"][0]
    assert event["metadata"] == {} and event["task_id"] is None
    assert event["payload"] == {} and event["priority"] == "medium"


@pytest.mark.parametrize(
    ("body_trace", "header", "expected"),
    [
        ("from-body", None, "from-body"),
        ("from-body", "req-from-header", "from-body"),
        (None, "req-from-header", "req-from-header"),
        (None, None, None),  # generated: the request id the response carries
        (None, "not a valid id!", None),  # a malformed X-Request-ID is replaced, not stored
    ],
)
def test_trace_id_comes_from_body_then_request_id_then_new(
    client, keys, body_trace, header, expected
):
    headers = {**keys["agent"], **({"X-Request-ID": header} if header else {})}
    body = {"trace_id": body_trace} if body_trace else {}
    response = publish(client, headers, event_type="trace.check", **body)
    assert response.status_code == 201
    trace_id = read(client, keys["user"])["events"][0]["trace_id"]
    if expected is None:
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
        assert trace_id == response.headers["X-Request-ID"]
    else:
        assert trace_id == expected


def test_generated_trace_ids_differ_per_request(client, keys):
    for _ in range(2):
        publish_ok(client, keys["agent"], event_type="trace.check")
    first, second = read(client, keys["user"])["events"]
    assert first["trace_id"] != second["trace_id"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("P0", "critical"),
        ("P1", "high"),
        ("P2", "medium"),
        ("P3", "low"),
        ("critical", "critical"),
        ("high", "high"),
        ("medium", "medium"),
        ("low", "low"),
        (None, "medium"),
    ],
)
def test_priority_is_mapped_to_the_event_scale(client, keys, given, stored):
    body = {"priority": given} if given else {}
    publish_ok(client, keys["agent"], event_type="priority.check", **body)
    assert read(client, keys["user"])["events"][0]["priority"] == stored


# Live fan-out -------------------------------------------------------------------------


@pytest.fixture
def subscriber(app, redis_server):
    """Open redis-py pub/sub connections on the app's Redis; all closed after the test."""
    opened = []

    def listen(*channels: str, patterns: tuple[str, ...] = ()):
        pubsub = redis_server.client().pubsub()
        opened.append(pubsub)
        channel = redis_keys(app).event_channel
        full = [channel(c) for c in channels]
        if full:
            pubsub.subscribe(*full)
        if patterns:
            pubsub.psubscribe(*(channel(p) for p in patterns))
        for _ in range(len(full) + len(patterns)):  # wait until every subscription holds
            confirmation = pubsub.get_message(timeout=5)
            assert confirmation and confirmation["type"] in ("subscribe", "psubscribe")
        return pubsub

    yield listen
    for pubsub in opened:
        pubsub.close()


def drain(pubsub, expected: int) -> list[dict]:
    """`expected` messages, then a short wait to prove no extra one follows."""
    messages = []
    while len(messages) < expected:
        message = pubsub.get_message(timeout=5)
        assert message is not None, f"only {len(messages)} of {expected} messages arrived"
        messages.append(message)
    assert pubsub.get_message(timeout=0.2) is None
    return messages


def test_subscriber_gets_the_stored_envelope_on_both_channels(app, client, keys, subscriber):
    pubsub = subscriber("deploy.succeeded", "*", "deploy.failed")
    event_id = publish_ok(
        client,
        keys["agent"],
        event_type="deploy.succeeded",
        source_agent="ops_agent",
        trace_id="t-1",
        priority="P0",
        payload=RICH_PAYLOAD,
        metadata={"k": "v"},
    )
    stored = read(client, keys["user"])["events"][0]

    messages = drain(pubsub, 2)  # nothing on deploy.failed
    channel = redis_keys(app).event_channel
    assert sorted(m["channel"] for m in messages) == [channel("*"), channel("deploy.succeeded")]
    for message in messages:
        assert message["type"] == "message"
        live = json.loads(message["data"])
        assert live["event_id"] == event_id == stored["event_id"]
        assert live == stored


def test_documented_subscriptions_deliver_each_event_once(app, client, keys, subscriber):
    """docs/events.md: SUBSCRIBE to the literal `*` channel, PSUBSCRIBE a family."""
    everything = subscriber("*")
    family = subscriber(patterns=("task.*",))
    task = client.post(
        "/tasks", json={"type": "bugfix", "priority": "P3"}, headers=keys["agent"]
    ).json["task_id"]
    publish_ok(client, keys["agent"], event_type="deploy.started")

    assert [json.loads(m["data"])["event_type"] for m in drain(everything, 3)] == [
        "task.created",
        "task.assigned",
        "deploy.started",
    ]
    family_events = [json.loads(m["data"]) for m in drain(family, 2)]
    assert [(e["event_type"], e["task_id"]) for e in family_events] == [
        ("task.created", task),
        ("task.assigned", task),
    ]


def test_the_service_events_live_message_is_the_envelope_replay_shows(
    app, client, keys, subscriber
):
    """The stream entry leaves out what it can restore; the live message restores it too."""
    everything = subscriber("*")
    own_trace = client.post(
        "/tasks",
        json={"type": "bugfix", "priority": "P2", "trace_id": "req-7f3a9c"},
        headers=keys["agent"],
    ).json["task"]
    default_trace = client.post(
        "/tasks", json={"type": "faq", "priority": "P3"}, headers=keys["agent"]
    ).json["task"]
    live = [json.loads(m["data"]) for m in drain(everything, 4)]

    replayed = read(client, keys["user"], order="asc")["events"][-4:]
    assert live == replayed
    created = [e for e in replayed if e["event_type"] == "task.created"]
    assert [(e["task_id"], e["trace_id"], e["priority"]) for e in created] == [
        (own_trace["task_id"], "req-7f3a9c", "medium"),
        (default_trace["task_id"], default_trace["task_id"], "low"),
    ]
    assert {(e["published_by"], e["source_agent"]) for e in replayed} == {
        ("orchestrator", "orchestrator")
    }
    assert all(e["metadata"] == {} and ISO_UTC.match(e["timestamp"]) for e in replayed)


def test_a_stream_entry_stores_each_fact_once(app, client, keys):
    """Type, task and source are the entry's fields and its id is the timestamp: `data`
    holds only the rest, so an event costs Redis memory once."""
    task = client.post("/tasks", json={"type": "faq", "priority": "P2"}, headers=keys["agent"])
    task_id = task.json["task_id"]
    publish_ok(client, keys["agent"], event_type="deploy.started", task_id=task_id)
    redis = app.extensions["orchestrator.redis"]
    entries = redis.xrevrange(redis_keys(app).name("events"), count=3)[::-1]

    created, _, published = (json.loads(fields["data"]) for _, fields in entries)
    assert created == {"c": ["faq_agent", "faq", "P2", "apikey:agent"]}
    assert set(published) == {"published_by", "trace_id", "priority", "payload", "metadata"}
    first_id = entries[0][0]
    replayed = read(client, keys["user"], order="asc", task_id=task_id)["events"]
    assert replayed[0]["event_id"] == first_id
    assert replayed[0]["timestamp"] == task.json["task"]["created_at"]
    assert replayed[0]["payload"]["task_id"] == task_id


def test_an_event_keeps_its_own_timestamp_when_the_stream_is_ahead_of_the_clock(app, client, keys):
    """After Redis' clock steps back, the stream's last id is ahead of it: Redis picks the
    id, and the entry stores the timestamp the id no longer tells."""
    redis = app.extensions["orchestrator.redis"]
    stream = redis_keys(app).name("events")
    future_ms = (int(datetime.now(UTC).timestamp()) + 86_400) * 1000
    redis.xadd(
        stream,
        {"type": "x.y", "task_id": "", "source_agent": "a", "data": "{}"},
        id=f"{future_ms}-0",
    )
    event_id = publish_ok(client, keys["agent"], event_type="deploy.started")

    assert int(event_id.split("-")[0]) == future_ms
    (event,) = read(client, keys["user"], order="asc", after=f"{future_ms}-0")["events"]
    stamped = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert abs((stamped - datetime.now(UTC)).total_seconds()) < 60
    assert (event["event_id"], event["event_type"]) == (event_id, "deploy.started")


def test_entries_written_before_the_compact_form_read_back_whole(app, client, keys):
    """An upgrade keeps the stream: entries holding the whole envelope in `data` replay
    as they did."""
    redis = app.extensions["orchestrator.redis"]
    envelope = {
        "event_type": "deploy.started",
        "source_agent": "ops_agent",
        "published_by": "apikey:agent",
        "task_id": None,
        "trace_id": "t-9",
        "priority": "high",
        "payload": {"v": 1},
        "metadata": {"k": "v"},
        "timestamp": "2026-01-02T03:04:05.678Z",
    }
    fields = {"type": "deploy.started", "task_id": "", "source_agent": "ops_agent"}
    event_id = redis.xadd(redis_keys(app).name("events"), {**fields, "data": json.dumps(envelope)})

    (event,) = read(client, keys["user"], order="desc", limit=1)["events"]
    assert event == {"event_id": event_id, **envelope}


# The service's own events: compact entries, each read back from itself alone ---------------


def assigned_envelope(event_id: str, task_id: str, timestamp: str) -> dict:
    """A new task's task.assigned (P3, trace = its id) as it was always shown."""
    return {
        "event_id": event_id,
        "event_type": "task.assigned",
        "source_agent": "orchestrator",
        "published_by": "orchestrator",
        "task_id": task_id,
        "trace_id": task_id,
        "priority": "low",
        "payload": {
            "task_id": task_id,
            "assigned_to": "dev_agent",
            "previous_status": None,
            "status": "assigned",
            "error": None,
            "retry_count": 0,
        },
        "metadata": {},
        "timestamp": timestamp,
    }


def delivered(app) -> list[str]:
    """What the webhook deliveries made now carry (the envelope's JSON text), by event."""
    queue = app.extensions["orchestrator.services"].deliveries
    queue.fan_out(queue.read_new("c1", 1000, 0))
    attempts, _ = queue.claim(1000)
    attempts.sort(key=lambda a: [int(part) for part in a.delivery["event_id"].split("-")])
    return [attempt.delivery["data"] for attempt in attempts]


def test_status_changes_store_only_what_their_entry_cannot_tell(app, client, api, keys, subscriber):
    """A status change's entry leaves out the service's source, a status that is its
    type's suffix, no previous status, no error and no retries; replay, the live message
    and a webhook delivery show every value, in the payload's order, as they always did."""
    hook = {"url": "https://hooks.example.com/in", "events": ["task.*"]}
    api.call("POST", "/webhooks", as_="admin", expect=201, json=hook)
    everything = subscriber("*")
    task_id = api.create()["task_id"]  # a P3 bugfix: created, then assigned
    api.claim(lease_seconds=1)
    time.sleep(1.1)
    api.claim()  # requeues the expired lease, then claims the task again
    api.status(task_id, "failed", error="boom")
    api.call("POST", f"/tasks/{task_id}/retry", as_="admin")

    entries = app.extensions["orchestrator.redis"].xrange(redis_keys(app).name("events"))
    types = ["task.created", "task.assigned", "task.in_progress", "task.requeued"]
    types += ["task.in_progress", "task.failed", "task.retried"]
    assert [(f["type"], f["task_id"], f["source_agent"]) for _, f in entries] == [
        (event_type, task_id, "") for event_type in types
    ]
    agent = {"assigned_to": "dev_agent"}
    created = {**agent, "type": "bugfix", "priority": "P3", "created_by": "apikey:agent"}
    assert [json.loads(fields["data"]) for _, fields in entries] == [
        {"c": list(created.values())},  # task.created: its values, its priority implied
        {"p": agent, "priority": "low"},
        {"p": {**agent, "previous_status": "assigned"}, "priority": "low"},
        {
            "p": {**agent, "previous_status": "in_progress", "status": "assigned"}
            | {"retry_count": 1},
            "priority": "low",
        },
        {"p": {**agent, "previous_status": "assigned", "retry_count": 1}, "priority": "low"},
        {
            "p": {**agent, "previous_status": "in_progress", "error": "boom", "retry_count": 1},
            "priority": "low",
        },
        {"p": {**agent, "previous_status": "failed", "status": "assigned"}, "priority": "low"},
    ]

    def change(previous, status, error=None, retries=0):
        fields = {"previous_status": previous, "status": status, "error": error}
        return {"task_id": task_id, **agent, **fields, "retry_count": retries}

    live = [json.loads(m["data"]) for m in drain(everything, len(types))]
    payloads = [
        {"task_id": task_id, **created},
        change(None, "assigned"),
        change("assigned", "in_progress"),
        change("in_progress", "assigned", retries=1),
        change("assigned", "in_progress", retries=1),
        change("in_progress", "failed", error="boom", retries=1),
        change("failed", "assigned"),
    ]
    expected = [
        {
            **assigned_envelope(message["event_id"], task_id, message["timestamp"]),
            "event_type": event_type,
            "payload": payload,
        }
        for message, event_type, payload in zip(live, types, payloads, strict=True)
    ]
    # Byte for byte, key order included: the API's answer and each delivery.
    compact = (",", ":")
    query = {"task_id": task_id, "order": "asc"}
    answer = client.get("/events", query_string=query, headers=keys["user"])
    assert f'"events":{json.dumps(expected, separators=compact)},' in answer.get_data(True)
    assert delivered(app) == [json.dumps(event, separators=compact) for event in expected]
    for message, event in zip(live, expected, strict=True):
        assert message == event and list(message["payload"]) == list(event["payload"])
    assert read(client, keys["user"], order="asc", source_agent="orchestrator")["events"] == (
        expected
    )


def test_client_events_keep_their_source_and_payload_as_sent(app, client, keys, subscriber):
    """The service's own events are stored compact; a client's event, even one shaped or
    named like a status change, keeps its source and gains no value it was not sent."""
    hook = {"url": "https://hooks.example.com/in", "events": ["build.*"]}
    assert client.post("/webhooks", json=hook, headers=keys["admin"]).status_code == 201
    everything = subscriber("*")
    task_id = str(uuid.uuid4())
    payloads = [{"assigned_to": "dev_agent"}, {}, {"status": "assigned", "error": None}]
    for payload in payloads:
        publish_ok(
            client,
            keys["agent"],
            event_type="build.assigned",
            source_agent="ci",
            task_id=task_id,
            payload=payload,
        )
    entries = app.extensions["orchestrator.redis"].xrange(redis_keys(app).name("events"))
    assert [f["source_agent"] for _, f in entries] == ["ci"] * 3
    assert [json.loads(f["data"])["payload"] for _, f in entries] == payloads

    replayed = read(client, keys["user"], order="asc", task_id=task_id)["events"]
    assert [e["payload"] for e in replayed] == payloads
    assert {(e["source_agent"], e["published_by"]) for e in replayed} == {("ci", "apikey:agent")}
    assert [json.loads(m["data"]) for m in drain(everything, 3)] == replayed
    assert [json.loads(data) for data in delivered(app)] == replayed
    assert read(client, keys["user"], source_agent="orchestrator")["events"] == []
    assert read(client, keys["user"], order="asc", source_agent="ci")["events"] == replayed


def test_the_service_events_of_either_form_replay_and_filter_alike(app, client, api, keys):
    """Entries written before the compact form (the service's name as source, the whole
    payload) replay as they did, and the service's source finds both forms."""
    redis = app.extensions["orchestrator.redis"]
    stream = redis_keys(app).name("events")
    old_task = str(uuid.uuid4())
    old_id = redis.xadd(  # a task.assigned as the service stored it before
        stream,
        {
            "type": "task.assigned",
            "task_id": old_task,
            "source_agent": "orchestrator",
            "data": '{"payload":{"assigned_to":"dev_agent","previous_status":null,'
            '"status":"assigned","error":null,"retry_count":0},"priority":"low"}',
        },
    )
    publish_ok(client, keys["agent"], event_type="deploy.started", source_agent="dev_agent")
    new_task = api.create()["task_id"]
    old, published, created, new = read(client, keys["user"], order="asc")["events"]
    assert redis.xrange(stream, new["event_id"], new["event_id"])[0][1]["source_agent"] == ""

    assert old == assigned_envelope(old_id, old_task, old["timestamp"])
    assert new == assigned_envelope(new["event_id"], new_task, new["timestamp"])
    assert list(old["payload"]) == list(new["payload"])
    for order, service in (("asc", [old, created, new]), ("desc", [new, created, old])):
        assert read(client, keys["user"], order=order, source_agent="orchestrator")["events"] == (
            service
        )
    assert read(client, keys["user"], source_agent="dev_agent")["events"] == [published]


def created_envelope(event_id: str, task: dict, priority: str, trace_id: str) -> dict:
    """A task.created as it was always shown: the payload in the order the service wrote."""
    return {
        "event_id": event_id,
        "event_type": "task.created",
        "source_agent": "orchestrator",
        "published_by": "orchestrator",
        "task_id": task["task_id"],
        "trace_id": trace_id,
        "priority": priority,
        "payload": {
            "task_id": task["task_id"],
            "assigned_to": task["assigned_to"],
            "type": task["type"],
            "priority": task["priority"],
            "created_by": task["created_by"],
        },
        "metadata": {},
        "timestamp": task["created_at"],
    }


@pytest.mark.parametrize(
    ("body", "priority", "own_trace"),
    [
        ({"type": "bugfix", "priority": "P3"}, "low", None),
        ({"type": "faq"}, "medium", None),  # P2, the default
        ({"type": "bugfix", "priority": "P1", "trace_id": "req-7f3a9c"}, "high", "req-7f3a9c"),
    ],
    ids=["P3", "P2-default", "own-trace"],
)
def test_a_created_event_stores_its_payload_as_a_list(
    app, client, api, keys, subscriber, body, priority, own_trace
):
    """A task.created entry keeps its payload's values as "c", in model.CREATED_PAYLOAD's
    order, and no priority (its task's decides it); replay, the live message and a webhook
    delivery show the whole envelope, byte for byte as before."""
    hook = {"url": "https://hooks.example.com/in", "events": ["task.created"]}
    api.call("POST", "/webhooks", as_="admin", expect=201, json=hook)
    everything = subscriber("task.created")
    task = api.call("POST", "/tasks", as_="agent", expect=201, json=body)["task"]
    task_id = task["task_id"]

    entries = app.extensions["orchestrator.redis"].xrange(redis_keys(app).name("events"))
    created = [fields for _, fields in entries if fields["type"] == "task.created"]
    values = [task["assigned_to"], task["type"], task["priority"], task["created_by"]]
    stored = {"c": values} | ({"trace_id": own_trace} if own_trace else {})
    assert created == [
        {
            "type": "task.created",
            "task_id": task_id,
            "source_agent": "",
            "data": json.dumps(stored, separators=(",", ":")),
        }
    ]

    event_id = next(entry_id for entry_id, f in entries if f["type"] == "task.created")
    expected = created_envelope(event_id, task, priority, own_trace or task_id)
    compact = json.dumps(expected, separators=(",", ":"))
    query = {"task_id": task_id, "order": "asc", "limit": 1}
    answer = client.get("/events", query_string=query, headers=keys["user"])
    assert f'"events":[{compact}],' in answer.get_data(True)
    (live,) = drain(everything, 1)
    message = json.loads(live["data"])
    assert message == expected and list(message["payload"]) == list(expected["payload"])
    assert delivered(app)[0] == compact


OLD_CREATED = (
    '{"payload":{"assigned_to":"dev_agent","type":"bugfix","priority":"P3",'
    '"created_by":"apikey:bench"},"priority":"low"}'
)


@pytest.mark.parametrize("source_agent", ["", "orchestrator"])
@pytest.mark.parametrize(
    ("data", "trace_id", "priority"),
    [
        (OLD_CREATED, None, "low"),
        (OLD_CREATED[:-1] + ',"trace_id":"req-1"}', "req-1", "low"),
        (OLD_CREATED.replace('"P3"', '"P2"').replace(',"priority":"low"', ""), None, "medium"),
    ],
    ids=["P3", "own-trace", "P2-default"],
)
def test_created_events_written_before_the_list_form_read_back_the_same(
    app, client, keys, source_agent, data, trace_id, priority
):
    """A task.created entry a previous release wrote (its whole payload, its priority)
    replays as it did, in the payload's order."""
    redis = app.extensions["orchestrator.redis"]
    task_id = str(uuid.uuid4())
    event_id = redis.xadd(
        redis_keys(app).name("events"),
        {"type": "task.created", "task_id": task_id, "source_agent": source_agent, "data": data},
    )
    (event,) = read(client, keys["user"], order="desc", limit=1)["events"]
    payload = {"task_id": task_id, **json.loads(data)["payload"]}
    assert event == {
        "event_id": event_id,
        "event_type": "task.created",
        "source_agent": "orchestrator",
        "published_by": "orchestrator",
        "task_id": task_id,
        "trace_id": trace_id or task_id,
        "priority": priority,
        "payload": payload,
        "metadata": {},
        "timestamp": event["timestamp"],
    }
    assert list(event["payload"]) == list(payload)


@pytest.mark.parametrize("priority", ["P0", "P1", "P2", "P3"])
def test_the_list_form_and_the_whole_payload_give_one_envelope(priority):
    """envelope_of reads either form of a task.created entry into the same envelope."""
    fields = {"type": "task.created", "task_id": "t-1", "source_agent": ""}
    values = ["dev_agent", "bugfix", priority, "apikey:bench"]
    whole = {"payload": dict(zip(CREATED_PAYLOAD, values, strict=True))}
    if priority != "P2":
        whole["priority"] = EVENT_PRIORITIES[priority]
    old = envelope_of("5-0", {**fields, "data": json.dumps(whole)})
    new = envelope_of("5-0", {**fields, "data": json.dumps({"c": values})})
    assert new == old and json.dumps(new) == json.dumps(old)
    assert new["priority"] == EVENT_PRIORITIES[priority]


def test_psubscribe_on_the_wildcard_pattern_sees_each_event_twice(client, keys, subscriber):
    """Why the docs recommend SUBSCRIBE for everything: the pattern matches both channels."""
    pubsub = subscriber(patterns=("*",))
    event_id = publish_ok(client, keys["agent"], event_type="deploy.started")
    assert [json.loads(m["data"])["event_id"] for m in drain(pubsub, 2)] == [event_id] * 2


# Trimming -----------------------------------------------------------------------------


def test_stream_is_trimmed_near_its_bound(make_app, keys):
    app = make_app(ORCHESTRATOR_EVENT_STREAM_MAXLEN="100")
    client = app.test_client()
    last = [
        publish_ok(client, keys["agent"], event_type="load.tick", payload={"n": n})
        for n in range(1000)
    ][-1]

    length = stream_len(app)
    assert 100 <= length <= 300  # approximate trimming drops whole nodes of ~100 entries
    everything = read(client, keys["user"], limit=1000)
    assert everything["count"] == length
    assert everything["events"][0]["event_id"] == last
    assert everything["events"][0]["payload"] == {"n": 999}


# Paging and replay ----------------------------------------------------------------------


def test_paging_with_after_sees_every_event_once_while_publishing(app, keys):
    total = 120
    published: list[str] = []
    done = threading.Event()

    def produce():
        writer = app.test_client()
        try:
            for n in range(total):
                published.append(
                    publish_ok(writer, keys["agent"], event_type="load.tick", payload={"n": n})
                )
        finally:
            done.set()

    thread = threading.Thread(target=produce)
    reader = app.test_client()
    seen: list[str] = []
    thread.start()
    page = read(reader, keys["user"], order="asc", limit=7)
    while True:
        assert page["count"] <= 7
        seen.extend(ids(page))
        cursor = page["next"]
        assert cursor == (seen[-1] if seen else "0-0")  # asc: always where to resume
        finished = done.is_set()
        page = read(reader, keys["user"], after=cursor, limit=7)
        if finished and page["count"] == 0:
            assert page["next"] == cursor  # a tailing client keeps polling from here
            break
    thread.join()

    assert len(published) == total
    assert seen == published
    # One clock (Redis') stamps them all: timestamps never run backwards in stream order.
    stamps = [e["timestamp"] for e in read(reader, keys["user"], order="asc", limit=1000)["events"]]
    assert len(stamps) == total and stamps == sorted(stamps)


@pytest.fixture
def ten_events(client, keys) -> list[str]:
    return [
        publish_ok(client, keys["agent"], event_type="seq.step", payload={"n": n})
        for n in range(10)
    ]


# (query, the events expected by index among ten): the bounds are exclusive either way.
BOUNDS = [
    ({}, list(range(9, -1, -1))),  # newest first by default
    ({"order": "asc"}, list(range(10))),
    ({"after": 3}, list(range(4, 10))),  # oldest first by default after a cursor
    ({"after": 3, "order": "desc"}, list(range(9, 3, -1))),
    ({"before": 6}, list(range(5, -1, -1))),
    ({"before": 6, "order": "asc"}, list(range(6))),
    ({"after": 2, "before": 7}, [3, 4, 5, 6]),
    ({"after": 2, "before": 7, "order": "desc"}, [6, 5, 4, 3]),
    ({"after": 4, "before": 5}, []),
    ({"after": 9}, []),
    ({"before": 0}, []),
]


@pytest.mark.parametrize(("query", "expected"), BOUNDS)
def test_before_and_after_are_exclusive_in_both_orders(client, keys, ten_events, query, expected):
    query = {k: ten_events[v] if k in ("after", "before") else v for k, v in query.items()}
    assert ids(read(client, keys["user"], **query)) == [ten_events[n] for n in expected]


TASK = str(uuid.uuid4())


@pytest.fixture
def ten_task_events(client, keys) -> list[str]:
    """Ten events about one task, each between two about another: read through the
    task's event index, the others must never show and the bounds work the same."""
    other = str(uuid.uuid4())
    mine = []
    for _ in range(10):
        publish_ok(client, keys["agent"], event_type="seq.other", task_id=other)
        mine.append(publish_ok(client, keys["agent"], event_type="seq.step", task_id=TASK))
    publish_ok(client, keys["agent"], event_type="seq.other", task_id=other)
    return mine


@pytest.mark.parametrize(("query", "expected"), BOUNDS)
def test_one_tasks_events_honour_the_bounds_in_both_orders(
    client, keys, ten_task_events, query, expected
):
    query = {k: ten_task_events[v] if k in ("after", "before") else v for k, v in query.items()}
    body = read(client, keys["user"], task_id=TASK, **query)
    assert ids(body) == [ten_task_events[n] for n in expected]


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_one_tasks_events_page_out_once_each(client, keys, ten_task_events, order):
    seen, query = [], {"limit": 3, "order": order, "task_id": TASK}
    for _ in range(10):
        page = read(client, keys["user"], **query)
        seen.extend(ids(page))
        if not page["count"] or page["next"] is None:
            break
        query["after" if order == "asc" else "before"] = page["next"]
    assert seen == (ten_task_events if order == "asc" else ten_task_events[::-1])


def test_a_tasks_events_trimmed_from_the_stream_are_skipped(make_app, keys):
    client = make_app(ORCHESTRATOR_EVENT_STREAM_MAXLEN="5").test_client()
    task_id = str(uuid.uuid4())
    published = [
        publish_ok(client, keys["agent"], event_type="seq.step", task_id=task_id)
        for _ in range(300)  # MAXLEN ~ trims whole nodes: enough to drop the oldest
    ]
    kept = ids(read(client, keys["user"], task_id=task_id, order="asc", limit=1000))
    assert kept and len(kept) < len(published)
    assert kept == published[-len(kept) :]


def test_desc_paging_with_before_ends_with_null_next(client, keys, ten_events):
    seen, query = [], {"limit": 4}
    while True:
        page = read(client, keys["user"], **query)
        seen.extend(ids(page))
        if page["next"] is None:
            break
        assert page["next"] == seen[-1]
        query["before"] = page["next"]
    assert seen == ten_events[::-1]


@pytest.mark.parametrize(
    ("query", "next_cursor"),
    [
        ({"order": "asc"}, "0-0"),  # an empty stream: resume from the very beginning
        ({"after": "5-0"}, "5-0"),
        ({"after": "0005-01"}, "5-1"),  # cursors come back in Redis' own spelling
        ({"after": MAX_ID}, MAX_ID),  # nothing can follow the largest id
        ({"before": "0-0", "order": "asc"}, "0-0"),
        ({"before": "0-0"}, None),
        ({"after": MAX_ID, "order": "desc"}, None),
        ({}, None),
    ],
)
def test_empty_ranges_answer_an_empty_page(client, keys, query, next_cursor):
    page = read(client, keys["user"], **query)
    assert page["events"] == [] and page["next"] == next_cursor


def test_filters_match_inside_redis(client, keys):
    t1, t2 = str(uuid.uuid4()), str(uuid.uuid4())
    specs = [
        ("build.started", t1, "ci"),
        ("build.finished", t1, "ci"),
        ("build.started", t2, "ci"),
        ("deploy.started", t2, "ops_agent"),
        ("build.started", None, "ops_agent"),
    ]
    made = []
    for event_type, task_id, source in specs:
        body = {"task_id": task_id} if task_id else {}
        made.append(
            publish_ok(client, keys["agent"], event_type=event_type, source_agent=source, **body)
        )

    def query(expected_positions, **params):
        asc = read(client, keys["user"], order="asc", **params)
        desc = read(client, keys["user"], **params)
        assert ids(asc) == [made[i] for i in expected_positions]
        assert ids(desc) == ids(asc)[::-1]

    query([0, 2, 4], type="build.started")
    query([0, 1], task_id=t1)
    query([3, 4], source_agent="ops_agent")
    query([2], type="build.started", task_id=t2)
    query([4], type="build.started", source_agent="ops_agent")
    query([], type="build.started", task_id=t2, source_agent="ops_agent")
    query([], type="never.published")
    # A filtered page ends at its last match, and the next page resumes after it.
    first = read(client, keys["user"], type="build.started", order="asc", limit=2)
    assert ids(first) == [made[0], made[2]] and first["next"] == made[2]
    rest = read(client, keys["user"], type="build.started", after=first["next"], limit=2)
    assert ids(rest) == [made[4]]


def test_cloudevents_format(client, keys):
    task_id = str(uuid.uuid4())
    event_id = publish_ok(
        client,
        keys["agent"],
        event_type="deploy.succeeded",
        source_agent="ops agent/ü",
        task_id=task_id,
        trace_id="tr-1",
        priority="P3",
        payload={"version": "1.2.3"},
        metadata={"m": 1},
    )
    native = read(client, keys["user"])["events"][0]
    cloud = read(client, keys["user"], format="cloudevents")["events"]
    assert cloud == [
        {
            "specversion": "1.0",
            "id": event_id,
            "type": "deploy.succeeded",
            "source": "/agents/ops%20agent%2F%C3%BC",
            "time": native["timestamp"],
            "datacontenttype": "application/json",
            "data": {"version": "1.2.3"},
            "taskid": task_id,
            "traceid": "tr-1",
            "priority": "low",
        }
    ]


def test_cloudevents_leaves_out_absent_extensions(client, keys):
    publish_ok(client, keys["agent"], event_type="agent.heartbeat", source_agent="faq_agent")
    cloud = read(client, keys["user"], format="cloudevents")["events"][0]
    assert "taskid" not in cloud and cloud["source"] == "/agents/faq_agent"


# The service's own events -----------------------------------------------------------------


def test_task_creation_events_replay_in_order(client, keys):
    response = client.post(
        "/tasks",
        json={"type": "bugfix", "priority": "P3"},
        headers={**keys["agent"], "X-Request-ID": "req-task-1"},
    )
    assert response.status_code == 201
    task = response.json["task"]
    asc = read(client, keys["user"], task_id=task["task_id"], order="asc")
    assert [e["event_type"] for e in asc["events"]] == ["task.created", "task.assigned"]
    for event in asc["events"]:
        assert event["source_agent"] == "orchestrator"
        assert event["task_id"] == task["task_id"]
        assert event["trace_id"] == task["trace_id"]
        assert event["priority"] == "low" and event["metadata"] == {}
        assert ISO_UTC.match(event["timestamp"])
    assert asc["events"][1]["payload"]["status"] == "assigned"
    desc = read(client, keys["user"], task_id=task["task_id"])
    assert ids(desc) == ids(asc)[::-1]


def test_approval_flow_events_replay_in_order(client, keys):
    created = client.post(
        "/tasks", json={"type": "bugfix", "priority": "P0"}, headers=keys["agent"]
    ).json
    task_id, approval_id = created["task_id"], created["approval_id"]
    approved = client.post(f"/approvals/{approval_id}/approve", headers=keys["ops"])
    assert approved.status_code == 200
    events = read(client, keys["user"], task_id=task_id, order="asc")["events"]
    assert [e["event_type"] for e in events] == [
        "task.created",
        "task.awaiting_approval",
        "approval.requested",
        "approval.approved",
        "task.assigned",
    ]
    assert {e["priority"] for e in events} == {"critical"}
    assert all(e["event_type"] in WELL_KNOWN_TYPES for e in events)
    assert events[3]["payload"]["decided_by"] == "apikey:ops"


# Validation: 422 and nothing stored ----------------------------------------------------------

VALID = {"event_type": "job.started", "source_agent": "dev_agent", "payload": {"a": 1}}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_type": "Task.started"}, "event_type"),
        ({"event_type": "task"}, "event_type"),
        ({"event_type": "task."}, "event_type"),
        ({"event_type": ".task"}, "event_type"),
        ({"event_type": "task..started"}, "event_type"),
        ({"event_type": "task.st arted"}, "event_type"),
        ({"event_type": " task.started"}, "event_type"),
        ({"event_type": "task.started\n"}, "event_type"),
        ({"event_type": "1task.started"}, "event_type"),
        ({"event_type": "task.*"}, "event_type"),
        ({"event_type": "a." + "b" * 99}, "event_type"),  # 101 characters
        ({"event_type": ""}, "event_type"),
        ({"event_type": 7}, "event_type"),
        ({"event_type": None}, "event_type"),
        ({"payload": [1, 2]}, "payload"),
        ({"payload": "text"}, "payload"),
        ({"payload": None}, "payload"),
        ({"payload": 3}, "payload"),
        ({"metadata": ["x"]}, "metadata"),
        ({"source_agent": ""}, "source_agent"),  # the stream's mark of the service's own
        ({"source_agent": "a" * 65}, "source_agent"),
        ({"task_id": "not-a-uuid"}, "task_id"),
        ({"task_id": str(uuid.uuid4()) + "\n"}, "task_id"),
        ({"trace_id": ""}, "trace_id"),
        ({"trace_id": "t" * 129}, "trace_id"),
        ({"priority": "P4"}, "priority"),
        ({"priority": "urgent"}, "priority"),
        ({"unexpected": 1}, "unexpected"),
        ({"event_id": "1-1"}, "event_id"),  # clients cannot choose the stream id
    ],
)
def test_invalid_publish_is_422_and_stores_nothing(app, client, keys, subscriber, change, field):
    live = subscriber("*")
    body = {**VALID, **change}
    response = client.post("/events/publish", json=body, headers=keys["agent"])
    assert response.status_code == 422
    assert response.json["detail"] == "Validation failed"
    assert field in response.json["errors"]
    assert stream_len(app) == 0
    assert live.get_message(timeout=0.05) is None


@pytest.mark.parametrize("field", ["event_type", "source_agent", "payload"])
def test_missing_required_field_is_422(app, client, keys, field):
    body = {k: v for k, v in VALID.items() if k != field}
    response = client.post("/events/publish", json=body, headers=keys["agent"])
    assert response.status_code == 422
    assert response.json["errors"][field] == ["Missing data for required field."]
    assert stream_len(app) == 0


@pytest.mark.parametrize(
    "raw",
    [
        '{"event_type": "a.b", "source_agent": "x", "payload": {"n": NaN}}',
        '{"event_type": "a.b", "source_agent": "x", "payload": {"n": [Infinity]}}',
        '{"event_type": "a.b", "source_agent": "x", "payload": {}, "metadata": {"n": -Infinity}}',
    ],
)
def test_non_finite_numbers_are_not_json_and_are_refused(app, client, keys, raw):
    response = client.post(
        "/events/publish", data=raw, headers=keys["agent"], content_type="application/json"
    )
    assert response.status_code == 422
    assert response.json["errors"] in (
        {"payload": ["NaN and Infinity are not valid JSON numbers."]},
        {"metadata": ["NaN and Infinity are not valid JSON numbers."]},
    )
    assert stream_len(app) == 0


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ('{"event_type": "a.b",', 400),
        ("[1, 2]", 422),
        ('"text"', 422),
    ],
)
def test_malformed_or_non_object_body(app, client, keys, raw, status):
    response = client.post(
        "/events/publish", data=raw, headers=keys["agent"], content_type="application/json"
    )
    assert response.status_code == status
    assert "detail" in response.json
    assert stream_len(app) == 0


@pytest.mark.parametrize(("length", "field"), [(100, "event_type"), (64, "source_agent")])
def test_longest_accepted_values(client, keys, length, field):
    value = ("a." + "b" * (length - 2)) if field == "event_type" else "s" * length
    publish_ok(client, keys["agent"], **{**VALID, field: value})
    assert read(client, keys["user"])["events"][0][field] == value


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"after": "abc"}, "after"),
        ({"after": "1-"}, "after"),
        ({"after": "-1"}, "after"),
        ({"after": "1-2-3"}, "after"),
        ({"after": "1"}, "after"),
        ({"after": "1-1\n"}, "after"),
        ({"after": "\u0661-\u0660"}, "after"),  # Arabic-Indic digits: \d would take them
        ({"after": ""}, "after"),
        ({"after": "18446744073709551616-0"}, "after"),  # past 2**64 - 1
        ({"before": "0-18446744073709551616"}, "before"),
        ({"before": "99999999999999999999-0"}, "before"),
        ({"before": "+"}, "before"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "newest"}, "order"),
        ({"format": "xml"}, "format"),
        ({"type": "Task.Created"}, "type"),
        ({"task_id": "123"}, "task_id"),
    ],
)
def test_invalid_query_is_422(client, keys, query, field):
    response = client.get("/events", query_string=query, headers=keys["user"])
    assert response.status_code == 422
    assert field in response.json["errors"]


def test_limit_caps_the_page(client, keys):
    made = [publish_ok(client, keys["agent"], event_type="seq.step") for _ in range(3)]
    assert ids(read(client, keys["user"], limit=2)) == made[:0:-1]
    assert read(client, keys["user"], limit=1000)["count"] == 3


# Access, rate limit, cost -----------------------------------------------------------------


@pytest.mark.parametrize(("role", "status"), [("user", 403), (None, 401)])
def test_publish_needs_an_agent(app, client, keys, role, status):
    response = client.post("/events/publish", json=VALID, headers=keys[role] if role else {})
    assert response.status_code == status
    assert "detail" in response.json
    assert stream_len(app) == 0
    if status == 401:
        assert "WWW-Authenticate" in response.headers


def test_replay_needs_credentials(client):
    response = client.get("/events")
    assert response.status_code == 401
    assert response.json == {"detail": "Not authenticated"}


def test_rate_limit_on_publish(make_app, keys):
    app = make_app(ORCHESTRATOR_RATE_LIMIT_EVENTS="2")
    client = app.test_client()
    for remaining in (1, 0):
        response = publish(client, keys["agent"], event_type="burst.tick")
        assert response.status_code == 201
        assert response.headers["X-RateLimit-Limit"] == "2"
        assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    third = publish(client, keys["agent"], event_type="burst.tick")
    assert third.status_code == 429
    assert set(third.json) == {"detail"} and third.json["detail"].startswith("Rate limit")
    assert int(third.headers["Retry-After"]) >= 1
    assert stream_len(app) == 2


def test_publish_costs_one_redis_round_trip(make_app, own_redis, keys):
    app = make_app(redis_url=own_redis.url, ORCHESTRATOR_RATE_LIMIT_EXEMPT="apikey:agent")
    client = app.test_client()
    publish_ok(client, keys["agent"], event_type="warm.up")  # connects, loads the script
    probe = own_redis.client()
    probe.config_resetstat()

    publish_ok(client, keys["agent"], event_type="cost.check")

    stats = {
        name.removeprefix("cmdstat_"): value["calls"]
        for name, value in probe.info("commandstats").items()
    }
    # evalsha is the only command the app sent; time/xadd/publish ran inside the script.
    assert stats.pop("evalsha") == 1
    assert stats.pop("xadd") == 1 and stats.pop("publish") == 2
    # The call's id looked up, then its reply kept: it runs once if sent twice (once).
    assert stats.pop("get") == 1 and stats.pop("set") == 1
    stats.pop("time", None)
    stats.pop("config|resetstat", None)
    assert stats == {}


def test_openapi_documents_the_event_contract(client):
    spec = client.get("/openapi.json").json
    schema = spec["components"]["schemas"]["EventPublish"]
    event_type = schema["properties"]["event_type"]
    assert event_type["maxLength"] == 100
    assert event_type["pattern"] == r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
    assert all(name in event_type["description"] for name in WELL_KNOWN_TYPES)
    assert set(schema["required"]) == {"event_type", "source_agent", "payload"}
    params = {p["name"] for p in spec["paths"]["/events"]["get"]["parameters"]}
    assert {
        "type",
        "task_id",
        "source_agent",
        "after",
        "before",
        "order",
        "limit",
        "format",
    } <= params
