"""Planned dumps (app/dumping.py) give exactly marshmallow's dump: keys, order and values."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import fields

from app.dumping import _plan, dumper
from app.schemas.common import Schema
from app.schemas.events import EventPublishedSchema
from app.schemas.tasks import TaskCreatedSchema, TaskEnvelopeSchema, TaskListSchema, TaskSchema
from app.services import services


def same(a, b) -> bool:
    return json.dumps(a) == json.dumps(b)  # order-sensitive, unlike ==


def test_the_hot_response_schemas_have_a_plan():
    for schema in (TaskEnvelopeSchema, TaskCreatedSchema, TaskListSchema, EventPublishedSchema):
        assert _plan(schema()) is not None, schema.__name__


def test_stored_tasks_dump_as_marshmallow_dumps_them(app, api):
    gated = api.create(requires_approval=True, payload={"b": 1, "a": [2]})
    api.approve(gated["approval_id"])  # a receipt, with its approved_by list
    first = api.create(sla={"target": "4h"}, trace_id="t-1", delay_seconds=600)
    api.create(depends_on=[first["task_id"]], metadata={"z": None, "é": "ü"})
    api.create()
    claimed = api.claim()
    ids = [gated["task_id"], first["task_id"], claimed["task_id"]]
    page = api.call("GET", "/tasks", query_string={"limit": 10})
    with app.app_context():
        tasks = [services().tasks.get(task["task_id"]) for task in page["tasks"]]
    assert {task["task_id"] for task in tasks} >= set(ids)
    for task in tasks:
        for body in (
            {"success": True, "task_id": task["task_id"], "task": task, "message": "m"},
            {"success": True, "task_id": task["task_id"], "task": task, "lease_token": 3},
        ):
            assert same(dumper(TaskEnvelopeSchema)(body), TaskEnvelopeSchema().dump(body))
        created = {
            "success": True,
            "task_id": "x",
            "message": "m",
            "task": task,
            "approval_id": "a",
        }
        assert same(dumper(TaskCreatedSchema)(created), TaskCreatedSchema().dump(created))
    listed = {"success": True, "count": len(tasks), "tasks": tasks, "next_cursor": None}
    assert same(dumper(TaskListSchema)(listed), TaskListSchema().dump(listed))


# Values of every kind a record could hold, including the ones the dump normalises: `{}`
# where a list is expected (cjson's empty list), numbers in text fields, text in numbers.
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.text(max_size=5),
    st.binary(max_size=3),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
_task_keys = st.sampled_from([*TaskSchema().dump_fields, "extra", "items"])
_tasks = st.dictionaries(_task_keys, _values, max_size=12)


def _outcome(dump, body):
    try:
        return "ok", json.dumps(dump(body), default=repr)
    except Exception:  # noqa: BLE001 - both must fail (a 500), whichever way
        return "error", None


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(task=_tasks, message=st.one_of(st.none(), st.text(max_size=3), st.integers()))
def test_any_record_dumps_as_marshmallow_dumps_it(task, message):
    body = {"success": True, "task_id": task.get("task_id"), "task": task, "message": message}
    if message is None:
        del body["message"]
    for schema in (TaskEnvelopeSchema, TaskCreatedSchema):
        assert _outcome(dumper(schema), body) == _outcome(schema().dump, body)


class Unplanned(Schema):
    name = fields.String()
    ratio = fields.Float()  # no plan for floats: marshmallow dumps the whole schema


class Renamed(Schema):
    name = fields.String(attribute="other")


@pytest.mark.parametrize("schema", [Unplanned, Renamed])
def test_schemas_without_a_plan_are_dumped_by_marshmallow(schema):
    assert _plan(schema()) is None
    body = {"name": 1, "ratio": "2.5", "other": "o"}
    assert same(dumper(schema)(body), schema().dump(body))
