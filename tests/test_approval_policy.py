"""The HITL policy: which tasks need a second principal's approval, and why."""

from __future__ import annotations

import pytest

from app.config import ConfigError, Settings
from app.domain.policy import approval_reason

DEFAULTS = Settings(jwt_secret="x" * 40)


def task(task_type="bugfix", priority="P2", payload=None, metadata=None, **extra) -> dict:
    """A create request as the schema hands it to the domain (defaults filled in)."""
    return {
        "type": task_type,
        "priority": priority,
        "payload": payload or {},
        "metadata": metadata or {},
        **extra,
    }


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (task(), None),
        (task(priority="P3"), None),
        (task(priority="P0"), "priority P0"),
        (task(priority="P1"), "priority P1"),
        (task("deploy"), "deploy to production"),
        (task("deploy", payload={"environment": "production"}), "deploy to production"),
        (task("deploy", payload={"environment": " Production "}), "deploy to production"),
        (task("deploy", payload={"environment": "prod"}), "deploy to production"),
        (task("deploy", payload={"environment": None}), "deploy to production"),
        (task("deploy", payload={"environment": ""}), "deploy to production"),
        (task("deploy", payload={"environment": "staging"}), None),
        (task("deployment", payload={"environment": "production"}), "deployment to production"),
        (task("deployment", payload={"environment": "development"}), None),
        (task("feature"), "feature to production"),
        (task("feature", payload={"environment": "staging"}), None),
        (task("refactor"), "refactor to production"),
        (task("refactor", payload={"environment": "prod"}), "refactor to production"),
        (task("refactor", payload={"environment": "qa"}), None),
        (task("bugfix", payload={"environment": "production"}), None),
        (task("monitor", payload={"environment": "production"}), None),
        (task(metadata={"feature_flag_change": True}), "feature flag change"),
        (task(metadata={"feature_flag_change": False}), None),
        (task(metadata={"feature_flag_change": "true"}), None),
        (task(metadata={"feature_flag_change": 1}), None),
        (task(requires_approval=True), "approval requested by creator"),
        (task(requires_approval=False), None),
        (
            task("deploy", "P0", metadata={"feature_flag_change": True}, requires_approval=True),
            "priority P0; deploy to production; feature flag change; approval requested by creator",
        ),
    ],
)
def test_default_policy(request_, reason):
    assert approval_reason(request_, DEFAULTS) == reason


@pytest.mark.parametrize(
    ("env", "request_", "reason"),
    [
        ({"ORCHESTRATOR_HITL_PRIORITIES": "P0"}, task(priority="P1"), None),
        ({"ORCHESTRATOR_HITL_PRIORITIES": "P0"}, task(priority="P0"), "priority P0"),
        ({"ORCHESTRATOR_HITL_PRIORITIES": "P2,P3"}, task(priority="P3"), "priority P3"),
        ({"ORCHESTRATOR_HITL_PRIORITIES": "none"}, task(priority="P0"), None),
        # Declared but blank keeps the default: an empty dashboard field never opens the gate.
        ({"ORCHESTRATOR_HITL_PRIORITIES": ""}, task(priority="P1"), "priority P1"),
        ({"ORCHESTRATOR_HITL_TASK_TYPES": "bugfix"}, task("bugfix"), "bugfix to production"),
        ({"ORCHESTRATOR_HITL_TASK_TYPES": "bugfix"}, task("deploy"), None),
        ({"ORCHESTRATOR_HITL_TASK_TYPES": "none"}, task("feature"), None),
        ({"ORCHESTRATOR_HITL_TASK_TYPES": ""}, task("feature"), "feature to production"),
        # The other rules hold whatever the overrides say.
        (
            {"ORCHESTRATOR_HITL_PRIORITIES": "none", "ORCHESTRATOR_HITL_TASK_TYPES": "none"},
            task(metadata={"feature_flag_change": True}),
            "feature flag change",
        ),
        (
            {"ORCHESTRATOR_HITL_PRIORITIES": "none", "ORCHESTRATOR_HITL_TASK_TYPES": "none"},
            task(requires_approval=True),
            "approval requested by creator",
        ),
    ],
)
def test_overrides_change_the_policy(env, request_, reason):
    settings = Settings.from_env({"ORCHESTRATOR_JWT_SECRET": "x" * 40, **env})
    assert approval_reason(request_, settings) == reason


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ORCHESTRATOR_HITL_PRIORITIES", "P0,P9"),
        ("ORCHESTRATOR_HITL_TASK_TYPES", "deploy,launch_rockets"),
    ],
)
def test_bad_override_stops_start_up(variable, value):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"ORCHESTRATOR_JWT_SECRET": "x" * 40, variable: value})
    assert error.value.variable == variable


# Through POST /tasks on a real Redis: each rule gates (or not) the stored task.
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"type": "bugfix", "priority": "P0"}, "priority P0"),
        ({"type": "bugfix", "priority": "P1"}, "priority P1"),
        ({"type": "deploy"}, "deploy to production"),
        ({"type": "deploy", "payload": {"environment": "production"}}, "deploy to production"),
        ({"type": "deploy", "payload": {"environment": "staging"}}, None),
        ({"type": "feature"}, "feature to production"),
        ({"type": "feature", "payload": {"environment": "staging"}}, None),
        ({"type": "refactor", "payload": {"environment": "production"}}, "refactor to production"),
        ({"type": "refactor"}, "refactor to production"),
        ({"type": "refactor", "payload": {"environment": "dev"}}, None),
        ({"type": "bugfix", "metadata": {"feature_flag_change": True}}, "feature flag change"),
        ({"type": "bugfix", "metadata": {"feature_flag_change": False}}, None),
        ({"type": "bugfix", "metadata": {"feature_flag_change": "true"}}, None),
        ({"type": "bugfix", "requires_approval": True}, "approval requested by creator"),
        ({"type": "bugfix", "requires_approval": False}, None),
        ({"type": "bugfix", "priority": "P2"}, None),
    ],
)
def test_create_applies_each_rule(client, keys, body, reason):
    assert_gating(client, keys, body, reason)


@pytest.mark.parametrize(
    ("env", "body", "reason"),
    [
        ({"ORCHESTRATOR_HITL_PRIORITIES": "P0"}, {"type": "bugfix", "priority": "P1"}, None),
        ({"ORCHESTRATOR_HITL_PRIORITIES": "P2"}, {"type": "bugfix"}, "priority P2"),
        (
            {"ORCHESTRATOR_HITL_TASK_TYPES": "incident"},
            {"type": "incident"},
            "incident to production",
        ),
        ({"ORCHESTRATOR_HITL_TASK_TYPES": "incident"}, {"type": "deploy"}, None),
    ],
)
def test_create_honours_overrides(make_app, keys, env, body, reason):
    assert_gating(make_app(**env).test_client(), keys, body, reason)


def assert_gating(client, keys, body, reason):
    """Create `body`; gated iff `reason`, with an approval record naming that reason."""
    response = client.post("/tasks", json=body, headers=keys["agent"])
    assert response.status_code == 201, response.json
    created = response.json
    stored = created["task"]
    if reason is None:
        assert stored["status"] == "assigned"
        assert stored["approval_id"] is None and "approval_id" not in created
        return
    assert stored["status"] == "awaiting_approval"
    assert created["approval_id"] == stored["approval_id"] == f"apr-{created['task_id']}"
    approval = client.get(f"/approvals/{created['approval_id']}", headers=keys["user"]).json
    assert approval["status"] == "pending"
    assert approval["reason"] == reason
    assert approval["task_id"] == created["task_id"]
    assert approval["task_type"] == body["type"]
    assert approval["priority"] == body.get("priority", "P2")
