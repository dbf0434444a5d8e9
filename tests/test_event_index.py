"""A task's event index: a field of its hash while short, its own list once long (Redis
memory per task), read alike either way, and never shown as a task field."""

from __future__ import annotations

import time

from app.domain.keys import EVENTS_FIELD, EVENTS_FIELD_MAX
from app.services import services
from tests.conftest import PRINCIPALS
from tests.helpers import event_field_ids, redis_keys, task_event_ids


def publish(api, task_id: str) -> str:
    """A client's event about a task: its id."""
    body = {"event_type": "progress.update", "source_agent": "dev_agent", "payload": {}}
    return api.call(
        "POST", "/events/publish", as_="agent", expect=201, json={**body, "task_id": task_id}
    )["event_id"]


def stream_ids(raw, key, task_id: str) -> list[str]:
    """The ids of a task's events, read from the stream itself."""
    return [i for i, fields in raw.xrange(key.name("events")) if fields.get("task_id") == task_id]


def encoded(ids: list[str]) -> str:
    """The field's text for `ids`: the first in full, then `<ms minus the first's>-<seq>`."""
    base = int(ids[0].split("-")[0])
    rest = (event_id.split("-") for event_id in ids[1:])
    return ",".join([ids[0], *(f"{int(ms) - base}-{seq}" for ms, seq in rest)])


def paged(api, task_id: str, order: str, limit: int = 3, **bounds) -> list[str]:
    """Every event id GET /events?task_id= gives, page after page through the cursors."""
    seen, query = [], {"task_id": task_id, "order": order, "limit": limit, **bounds}
    for _ in range(100):
        page = api.events(**query)
        seen += [event["event_id"] for event in page["events"]]
        if not page["count"] or page["next"] is None:
            break
        query["after" if order == "asc" else "before"] = page["next"]
    return seen


def assert_reads_in_order(api, task_id: str, expected: list[str]) -> None:
    """Both orders, whole and between two cursors, give the task's events in stream order."""
    assert paged(api, task_id, "asc") == expected
    assert paged(api, task_id, "desc") == expected[::-1]
    inner = {"after": expected[1], "before": expected[-2]}
    assert paged(api, task_id, "asc", limit=2, **inner) == expected[2:-2]
    assert paged(api, task_id, "desc", limit=2, **inner) == expected[-3:1:-1]


def test_a_task_with_few_events_keeps_its_index_in_its_hash(app, api, redis_server):
    raw, key = redis_server.client(), redis_keys(app)
    task_id = api.create()["task_id"]
    api.claim()
    publish(api, task_id)
    api.status(task_id, "completed")
    expected = stream_ids(raw, key, task_id)
    assert len(expected) == 5  # created, assigned, in_progress, the client's, completed

    text = raw.hget(key.task(task_id), EVENTS_FIELD)
    assert text == encoded(expected) and len(text) <= EVENTS_FIELD_MAX
    assert event_field_ids(text) == expected
    assert raw.exists(key.name("task_events", task_id)) == 0
    assert raw.object("encoding", key.task(task_id)) == "listpack"
    assert_reads_in_order(api, task_id, expected)


def test_a_task_whose_field_would_pass_the_limit_moves_every_id_to_its_list(app, api, redis_server):
    raw, key = redis_server.client(), redis_keys(app)
    task_id = api.create()["task_id"]
    expected, moved = stream_ids(raw, key, task_id), False
    for _ in range(25):
        expected.append(publish(api, task_id))
        text = raw.hget(key.task(task_id), EVENTS_FIELD)
        listed = raw.lrange(key.name("task_events", task_id), 0, -1)
        if text is not None:
            assert not moved, "a list never goes back to the field"
            assert listed == [] and text == encoded(expected)
            assert len(text) <= EVENTS_FIELD_MAX
        else:
            # Moved exactly when the field would have grown past the limit.
            assert moved or len(encoded(expected)) > EVENTS_FIELD_MAX
            assert listed == expected
            moved = True
        assert raw.object("encoding", key.task(task_id)) == "listpack"
    assert moved
    api.claim()  # the service's own events go to the list too
    expected = stream_ids(raw, key, task_id)
    assert task_event_ids(raw, key, task_id) == expected
    assert raw.hget(key.task(task_id), EVENTS_FIELD) is None
    assert_reads_in_order(api, task_id, expected)


def test_a_task_indexed_by_an_older_release_reads_alike_and_keeps_its_list(app, api, redis_server):
    """Hashes written before the field have none, and their index is the list."""
    raw, key = redis_server.client(), redis_keys(app)
    task_id = api.create()["task_id"]
    api.claim()
    expected = stream_ids(raw, key, task_id)
    assert task_event_ids(raw, key, task_id) == expected
    as_field = {order: paged(api, task_id, order) for order in ("asc", "desc")}

    raw.hdel(key.task(task_id), EVENTS_FIELD)
    raw.rpush(key.name("task_events", task_id), *expected)
    assert {order: paged(api, task_id, order) for order in ("asc", "desc")} == as_field
    publish(api, task_id)
    api.status(task_id, "completed")
    expected = stream_ids(raw, key, task_id)
    assert len(expected) == 5
    assert raw.hget(key.task(task_id), EVENTS_FIELD) is None
    assert raw.lrange(key.name("task_events", task_id), 0, -1) == expected
    assert_reads_in_order(api, task_id, expected)


def test_ids_a_double_cannot_hold_exactly_go_to_the_list(app, api, redis_server):
    """A stream id past 15 digits of milliseconds (Redis picks ids after the stream's
    last one) is kept as text, in the list."""
    raw, key = redis_server.client(), redis_keys(app)
    raw.xadd(key.name("events"), {"type": "far.future"}, id="90071992547409930-0")
    task_id = api.create()["task_id"]
    api.claim()
    expected = stream_ids(raw, key, task_id)
    assert len(expected) == 3 and all(len(i.split("-")[0]) == 17 for i in expected)
    assert raw.hget(key.task(task_id), EVENTS_FIELD) is None
    assert raw.lrange(key.name("task_events", task_id), 0, -1) == expected
    assert paged(api, task_id, "asc") == expected
    assert paged(api, task_id, "desc") == expected[::-1]


def test_no_answer_shows_the_index_field_as_a_task_field(app, api, redis_server):
    """read_task() leaves the field out: the scripts' own replies never carry it (the API
    would drop an unknown field anyway, so this looks beneath it)."""
    raw, key = redis_server.client(), redis_keys(app)
    task_id = api.create()["task_id"]
    publish(api, task_id)
    assert raw.hexists(key.task(task_id), EVENTS_FIELD)
    with app.app_context():
        scripts = services().tasks.scripts
        replies = [
            scripts.get_task(task_id=task_id)["task"],
            scripts.explain_task(task_id=task_id)["task"],
            *scripts.list_tasks(
                after_seq=None,
                limit=10,
                status=None,
                task_type=None,
                assigned_to=None,
                scan_budget=100,
            )["tasks"],
            scripts.claim_task(agent="dev_agent", lease_ms=60_000, principal=PRINCIPALS["agent"])[
                "task"
            ],
        ]
    assert [reply["task_id"] for reply in replies] == [task_id] * 4
    assert all(EVENTS_FIELD not in reply for reply in replies)
    shown = api.task(task_id)
    assert EVENTS_FIELD not in shown and shown["status"] == "in_progress"
    assert EVENTS_FIELD not in api.status(task_id, "completed")["task"]


def test_a_purged_task_takes_its_index_in_either_form(make_app, api, redis_server):
    app = make_app(ORCHESTRATOR_TASK_TTL="1")
    api = api.using(app.test_client())
    raw, key = redis_server.client(), redis_keys(app)
    few = api.create()["task_id"]
    api.status(few, "completed")
    many = api.create()["task_id"]
    for _ in range(20):
        publish(api, many)
    api.status(many, "completed")
    assert raw.hexists(key.task(few), EVENTS_FIELD)
    assert raw.exists(key.name("task_events", many)) == 1
    time.sleep(1.1)
    assert app.test_cli_runner().invoke(args=["sweep"]).exit_code == 0
    for task_id in (few, many):
        assert raw.exists(key.task(task_id), key.name("task_events", task_id)) == 0
        assert api.events(task_id=task_id)["count"] == 0
