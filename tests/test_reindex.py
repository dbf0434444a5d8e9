"""`flask --app wsgi reindex`: a store written before the indexes lists, counts and replays
exactly as if the indexes had always been kept."""

from __future__ import annotations

import uuid
from collections import defaultdict

from app.domain.keys import EVENTS_FIELD
from app.domain.model import STATUSES
from app.domain.reindex import reindex
from app.domain.scripts import Scripts
from app.services import redis_client
from harness import free_port
from tests.helpers import every_route, redis_keys, task_event_ids


def build_store(api) -> dict[str, str]:
    """One task in each status (each of another type), with a client event: name -> id."""
    ids = {}
    ids["completed"] = api.create(type="bugfix")["task_id"]
    api.claim("dev_agent")
    api.status(ids["completed"], "completed")
    ids["failed"] = api.create(type="alert")["task_id"]
    api.claim("ops_agent")
    api.status(ids["failed"], "failed", error="boom")
    ids["in_progress"] = api.create(type="faq")["task_id"]
    api.claim("faq_agent")
    ids["cancelled"] = api.create(type="investigate")["task_id"]
    api.cancel(ids["cancelled"])
    ids["assigned"] = api.create(type="bugfix")["task_id"]
    ids["awaiting_approval"] = api.create(type="deploy", priority="P0")["task_id"]
    ids["scheduled"] = api.create(type="kb_update", delay_seconds=3600)["task_id"]
    ids["blocked"] = api.create(type="monitor", depends_on=[ids["assigned"]])["task_id"]
    publish(api, ids["in_progress"])
    return ids


def publish(api, task_id: str) -> str:
    """A client's event about a task (stored tasks' event indexes must hold these too)."""
    body = {"event_type": "progress.update", "source_agent": "faq_agent", "payload": {}}
    return api.call(
        "POST", "/events/publish", as_="agent", expect=201, json={**body, "task_id": task_id}
    )["event_id"]


def listed(api, **query) -> list[str]:
    """GET /tasks with one filter: the task ids, newest first."""
    return [
        t["task_id"]
        for t in api.call("GET", "/tasks", query_string={**query, "limit": 1000})["tasks"]
    ]


def what_clients_see(api, ids: dict[str, str]) -> dict:
    """Every filtered listing, each task's events and the counts per status."""
    tasks = {task_id: api.task(task_id) for task_id in ids.values()}
    seen = {("status", s): listed(api, status=s) for s in STATUSES}
    for field in ("type", "assigned_to"):
        for value in {task[field] for task in tasks.values()}:
            seen[(field, value)] = listed(api, **{field: value})
    for task_id in ids.values():
        page = api.events(task_id=task_id, order="asc", limit=1000)
        seen[("events", task_id)] = [event["event_id"] for event in page["events"]]
    seen["counts"] = api.stats()["tasks"]
    return seen


def index_names(client, key) -> list[str]:
    """The status and route indexes and the event indexes stored now."""
    patterns = (f"{key.tag}:tasks:*", key.name("task_events", "*"))
    return sorted(name for pattern in patterns for name in client.scan_iter(pattern))


def event_fields(client, key) -> dict[str, str]:
    """The event index fields of the task hashes (a task's index while short): key -> text."""
    found = {name: client.hget(name, EVENTS_FIELD) for name in client.scan_iter(key.task("*"))}
    return {name: text for name, text in found.items() if text is not None}


def dump(client, key) -> dict:
    """Every index's content: members with scores, event ids in order, or a task hash's
    event index field."""
    return {
        name: client.lrange(name, 0, -1)
        if client.type(name) == "list"
        else client.zrange(name, 0, -1, withscores=True)
        for name in index_names(client, key)
    } | event_fields(client, key)


def forget_the_indexes(client, key) -> None:
    """The store as the release before the indexes left it: hashes, stream, old keys."""
    client.delete(*index_names(client, key), key.name("routes"))
    for name in event_fields(client, key):
        client.hdel(name, EVENTS_FIELD)
    client.zadd(f"{key.tag}:tasks", {"x": 1})
    client.hset(f"{key.tag}:counts", mapping={"assigned": 1})
    client.zadd(f"{key.tag}:dead:failed", {"x": 1})
    client.zadd(f"{key.tag}:dead:cancelled", {"x": 1})
    # The release before the route indexes: one index per type and one per agent.
    client.zadd(f"{key.tag}:tasks:type:bugfix", {"x": 1})
    client.zadd(f"{key.tag}:tasks:agent:dev_agent", {"x": 1})


def test_reindex_gives_back_every_listing_count_and_event_replay(app, api, redis_server):
    ids = build_store(api)
    stranger = str(uuid.uuid4())  # events about a task that is not stored are not indexed
    publish(api, stranger)
    client, key = redis_server.client(), redis_keys(app)
    before, indexes = what_clients_see(api, ids), dump(client, key)
    assert before[("status", "completed")] == [ids["completed"]]
    assert all(before["counts"][status] == 1 for status in STATUSES)
    assert len(before[("events", ids["in_progress"])]) == 4  # created, assigned, running, client's

    forget_the_indexes(client, key)
    # Without the indexes, the stored tasks and their events are out of sight.
    forgotten = what_clients_see(api, ids)
    assert forgotten[("status", "completed")] == []
    assert set(forgotten["counts"].values()) == {0}
    assert forgotten[("events", ids["in_progress"])] == []

    # A stale entry (a store's indexes in doubt) goes: each task is in one status index.
    client.zadd(key.name("by_status", "assigned"), {ids["completed"]: 1})

    runner = app.test_cli_runner()
    result = runner.invoke(args=["reindex"])
    assert result.exit_code == 0, result.output
    indexed_events = sum(len(before[("events", task_id)]) for task_id in ids.values())
    assert f"{len(ids)} task(s), {indexed_events} event(s)" in result.output
    assert "removed 6 key(s)" in result.output
    assert what_clients_see(api, ids) == before
    assert dump(client, key) == {k: v for k, v in indexes.items() if not k.endswith(stranger)}
    assert client.exists(key.name("task_events", stranger)) == 0
    old_layout = (
        *("tasks", "counts", "dead:failed", "dead:cancelled"),
        *("tasks:type:bugfix", "tasks:agent:dev_agent"),
    )
    assert client.exists(*(f"{key.tag}:{name}" for name in old_layout)) == 0

    again = runner.invoke(args=["reindex"])
    assert again.exit_code == 0, again.output
    assert f"{len(ids)} task(s), {indexed_events} event(s)" in again.output
    assert "removed 0 key(s)" in again.output
    assert what_clients_see(api, ids) == before


def assert_indexes_match_the_store(client, key) -> None:
    """Each index holds exactly what the task hashes and the stream say, in stream order."""
    tasks = {
        name.rsplit(":", 1)[1]: client.hmget(name, "status", "type", "assigned_to", "seq")
        for name in client.scan_iter(key.task("*"))
    }
    for status in STATUSES:
        expected = {task_id: float(row[3]) for task_id, row in tasks.items() if row[0] == status}
        assert (
            dict(client.zrange(key.name("by_status", status), 0, -1, withscores=True)) == expected
        )
    routes = {(row[1], row[2]) for row in tasks.values()}
    for route in routes:
        expected = {
            task_id: float(row[3]) for task_id, row in tasks.items() if tuple(row[1:3]) == route
        }
        by_route = key.name("by_route", *route)
        assert dict(client.zrange(by_route, 0, -1, withscores=True)) == expected
    assert routes <= {(task_type, agent) for task_type, agent in every_route(client, key)}
    events = defaultdict(list)
    for event_id, fields in client.xrange(key.name("events")):
        events[fields["task_id"]].append(event_id)
    for task_id in tasks:
        assert task_event_ids(client, key, task_id) == events[task_id]


def test_reindex_while_the_service_works_keeps_each_event_index_in_stream_order(
    app, api, redis_server, monkeypatch
):
    old = [api.create(type="faq")["task_id"] for _ in range(5)]
    client, key = redis_server.client(), redis_keys(app)
    forget_the_indexes(client, key)
    # Between any two batches the service goes on: it moves old tasks, publishes about
    # them and creates new ones, writing to the indexes being rebuilt.
    work = iter(
        [
            lambda: api.claim("faq_agent"),
            lambda: publish(api, old[1]),
            lambda: api.create(type="faq"),
            lambda: api.status(old[0], "completed"),
            lambda: publish(api, old[2]),
            lambda: api.cancel(old[3]),
            lambda: publish(api, old[1]),
        ]
    )
    calls = 0

    def service_meanwhile(method):
        def wrapped(self, **arguments):
            nonlocal calls
            calls += 1
            next(work, lambda: None)()
            return method(self, **arguments)

        return wrapped

    monkeypatch.setattr(Scripts, "reindex_tasks", service_meanwhile(Scripts.reindex_tasks))
    monkeypatch.setattr(Scripts, "reindex_events", service_meanwhile(Scripts.reindex_events))
    settings = app.extensions["orchestrator.settings"]
    done = reindex(redis_client(app), settings, task_batch=2, event_batch=3)
    assert calls >= 7  # every piece of work ran during the rebuild
    assert done.tasks >= len(old)
    assert_indexes_match_the_store(client, key)
    assert api.task(old[0])["status"] == "completed"
    assert listed(api, status="cancelled") == [old[3]]
    published = api.events(task_id=old[1], order="asc", limit=100)["events"]
    assert [event["event_type"] for event in published][-2:] == ["progress.update"] * 2


def test_reindex_files_a_short_index_in_the_task_hash_and_a_long_one_in_a_list(
    app, api, redis_server
):
    """Either form is rebuilt the way the service writes it, even across event batches;
    a list an older release wrote for a few events becomes the field."""
    client, key = redis_server.client(), redis_keys(app)
    few, many, old = (api.create(type="faq")["task_id"] for _ in range(3))
    for _ in range(20):
        publish(api, many)
    api.claim("faq_agent")
    old_ids = task_event_ids(client, key, old)
    client.hdel(key.task(old), EVENTS_FIELD)  # as an older release indexed it
    client.rpush(key.name("task_events", old), *old_ids)
    expected = {task_id: task_event_ids(client, key, task_id) for task_id in (few, many, old)}
    assert len(expected[many]) == 22
    forget_the_indexes(client, key)
    settings = app.extensions["orchestrator.settings"]
    for _ in range(2):  # and again: the same
        reindex(redis_client(app), settings, task_batch=2, event_batch=3)
        for task_id, ids in expected.items():
            assert task_event_ids(client, key, task_id) == ids
            assert client.object("encoding", key.task(task_id)) == "listpack"
            page = api.events(task_id=task_id, order="desc", limit=1000)["events"]
            assert [event["event_id"] for event in page] == ids[::-1]
        assert client.hexists(key.task(few), EVENTS_FIELD)
        assert client.hexists(key.task(old), EVENTS_FIELD)
        assert not client.hexists(key.task(many), EVENTS_FIELD)
        assert client.exists(*(key.name("task_events", t) for t in (few, many, old))) == 1


def test_reindex_names_a_redis_that_is_not_there(make_app):
    closed = free_port()
    app = make_app(redis_url=f"redis://127.0.0.1:{closed}/0")
    result = app.test_cli_runner().invoke(args=["reindex"])
    assert result.exit_code != 0
    assert f"Redis at 127.0.0.1:{closed} unavailable" in result.output
