"""The docs a newcomer tries first: examples that work as sent, described fields, ids."""

from __future__ import annotations

import re

import pytest
from marshmallow import fields

from app.docs import routing_table
from app.domain.model import DEFAULT_ROUTES
from app.schemas.common import Schema, describe
from harness import ROOT


@pytest.fixture
def spec(client):
    return client.get("/openapi.json").json


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield path, method, operation


def body_example(spec, path: str, method: str) -> dict:
    """What Swagger UI sends: the media-type example, else one built from field examples."""
    content = spec["paths"][path][method]["requestBody"]["content"]["application/json"]
    if "example" in content:
        return content["example"]
    name = content["schema"]["$ref"].rsplit("/", 1)[1]
    properties = spec["components"]["schemas"][name]["properties"]
    return {field: p["example"] for field, p in properties.items() if "example" in p}


def test_every_field_of_every_schema_is_described(spec):
    missing = [
        f"{name}.{field}"
        for name, schema in spec["components"]["schemas"].items()
        if name != "PaginationMetadata"
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert missing == []


def test_a_subclass_describes_its_own_fields_without_changing_its_parents():
    shared = fields.String(metadata={"description": "As declared"})

    class Parent(Schema):
        note = shared

    class Child(Parent):
        pass

    class Sibling(Schema):
        note = shared  # the same field object, as a module-level field is reused

    describe(Parent, note=(None, "an example"))
    describe(Child, note="The child's words")

    parent_doc = {"description": "As declared", "example": "an example"}
    assert Parent().fields["note"].metadata == parent_doc
    assert Child().fields["note"].metadata == {
        "description": "The child's words",
        "example": "an example",  # inherited from Parent's describe()
    }
    assert Sibling().fields["note"].metadata == {"description": "As declared"}
    assert shared.metadata == {"description": "As declared"}
    with pytest.raises(TypeError, match="Child has no field 'nope'"):
        describe(Child, nope="text")


def test_each_schema_sharing_a_field_shows_its_own_description(spec):
    # ApproveSchema describes the comment it inherits from ApproveQuerySchema, as
    # RejectSchema does (one field object): a reject's comment keeps the declaration's
    # words and no approve example.
    schemas = spec["components"]["schemas"]
    assert schemas["Approve"]["properties"]["comment"]["description"] == (
        "Stored in the approval record"
    )
    assert schemas["Approve"]["properties"]["comment"]["example"] == "Checked the diff; go ahead"
    assert schemas["Reject"]["properties"]["comment"]["description"] == "Stored with the decision"
    assert "example" not in schemas["Reject"]["properties"]["comment"]


def test_operation_ids_are_stable_and_unique(spec):
    ids = [operation.get("operationId") for _, _, operation in operations(spec)]
    assert None not in ids and len(ids) == len(set(ids))
    by_path = {(p, m): op["operationId"] for p, m, op in operations(spec)}
    assert by_path[("/tasks", "post")] == "tasks_create_task"
    assert by_path[("/tasks/claim", "post")] == "tasks_claim_task"
    assert by_path[("/agents", "get")] == "agents_list_agents"


def test_the_examples_succeed_when_sent_as_is(spec, client, keys):
    agent, ops = keys["agent"], keys["ops"]
    create = body_example(spec, "/tasks", "post")
    created = client.post("/tasks", json=create, headers=agent)
    assert created.status_code == 201, created.json
    assert created.json["task"]["status"] == "assigned"  # not gated, not junk
    assert "approval_id" not in created.json

    claim = body_example(spec, "/tasks/claim", "post")
    claimed = client.post("/tasks/claim", json=claim, headers=agent)
    assert claimed.status_code == 200, claimed.json
    task_id = claimed.json["task_id"]
    beat = body_example(spec, "/tasks/{task_id}/heartbeat", "post")
    assert client.post(f"/tasks/{task_id}/heartbeat", json=beat, headers=agent).status_code == 200
    status = body_example(spec, "/tasks/{task_id}/status", "patch")
    moved = client.patch(f"/tasks/{task_id}/status", json=status, headers=agent)
    assert moved.status_code == 200 and moved.json["task"]["status"] == "completed"

    event = body_example(spec, "/events/publish", "post")
    assert client.post("/events/publish", json=event, headers=agent).status_code == 201
    token = body_example(spec, "/auth/token", "post")
    assert client.post("/auth/token", json=token, headers=agent).status_code == 200

    for decision in ("approve", "reject"):
        gated = client.post("/tasks", json={"type": "deploy"}, headers=agent).json
        body = body_example(spec, f"/approvals/{{approval_id}}/{decision}", "post")
        decided = client.post(
            f"/approvals/{gated['approval_id']}/{decision}", json=body, headers=ops
        )
        assert decided.status_code == 200, decided.json


def test_the_routing_table_is_in_the_readme_and_the_docs(spec):
    table = routing_table(DEFAULT_ROUTES)
    readme = (ROOT / "README.md").read_text()
    shown = re.search(r"<!-- routing:start -->\n(.*?)\n<!-- routing:end -->", readme, re.S)
    assert shown and shown.group(1) == table
    assert table in spec["info"]["description"]
    for task_type, agent in DEFAULT_ROUTES.items():
        assert f"`{task_type}`" in table and f"`{agent}`" in table


def test_sla_and_sla_deadline_say_how_they_relate(spec):
    fields = spec["components"]["schemas"]["TaskCreate"]["properties"]
    assert "sla_deadline" in fields["sla"]["description"]
    assert "sla.deadline" in fields["sla_deadline"]["description"]
