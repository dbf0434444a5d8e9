"""Response schemas read objects with a plain key lookup (app/schemas/common.Schema) and
dump exactly what marshmallow's own accessor dumps: same keys, same order, same values."""

from __future__ import annotations

import json
from types import SimpleNamespace

import marshmallow
import pytest
from marshmallow import fields

from app.schemas.common import Schema
from app.schemas.tasks import TaskEnvelopeSchema, TaskListSchema


@pytest.fixture
def stock_dump(monkeypatch):
    """dump(schema, obj) with marshmallow's own accessor, nested schemas included."""

    def dump(schema, obj):
        with monkeypatch.context() as patch:
            patch.setattr(Schema, "get_attribute", marshmallow.Schema.get_attribute)
            return schema.dump(obj)

    return dump


def same(a, b) -> bool:
    return json.dumps(a) == json.dumps(b)  # order-sensitive, unlike ==


def test_task_pages_dump_as_with_marshmallows_accessor(api, stock_dump):
    gated = api.create(requires_approval=True, payload={"b": 1, "a": [2]})
    api.approve(gated["approval_id"])
    api.create(sla={"target": "4h"}, trace_id="t-1", delay_seconds=600)
    api.create()
    api.claim()
    page = api.call("GET", "/tasks", query_string={"limit": 10})
    assert page["count"] == 3
    assert any(task["approval"] for task in page["tasks"])
    schema = TaskListSchema()
    assert same(schema.dump(page), stock_dump(schema, page))
    for task in page["tasks"]:
        body = {"success": True, "task_id": task["task_id"], "task": task, "message": "m"}
        assert same(TaskEnvelopeSchema().dump(body), stock_dump(TaskEnvelopeSchema(), body))


class Probe(Schema):
    name = fields.String()
    count = fields.Integer()
    nested = fields.String(attribute="inner.value")


@pytest.mark.parametrize(
    "obj",
    [
        {"name": "x", "count": 2, "inner": {"value": "v"}},
        {"name": None},  # missing keys are left out, not null
        {},
        SimpleNamespace(name="attr", count=1, inner=SimpleNamespace(value="dotted")),
        {"name": 5, "count": "7", "inner": {}},  # converted; a missing nested value left out
    ],
    ids=["dict", "none-and-missing", "empty", "object", "conversions"],
)
def test_any_object_dumps_as_with_marshmallows_accessor(obj, stock_dump):
    assert same(Probe().dump(obj), stock_dump(Probe(), obj))
