"""Every (current, requested) status pair through PATCH /tasks/<id>/status, against the
task life cycle in README.md."""

from __future__ import annotations

import itertools

import pytest

from app.domain.model import STATUSES
from tests.helpers import stream_types

# The life cycle as seen through PATCH, written out here rather than read from the app:
# leaving awaiting_approval for assigned takes an approval decision, blocked and scheduled
# tasks go on by themselves (dependencies done, run time come), and in_progress goes
# back to assigned only when its lease expires.
ALLOWED = {
    "blocked": {"cancelled"},
    "awaiting_approval": {"cancelled"},
    "scheduled": {"cancelled"},
    "assigned": {"in_progress", "completed", "failed", "cancelled"},
    "in_progress": {"completed", "failed", "cancelled"},
    "completed": set(),
    "failed": set(),
    "cancelled": set(),
}


def reach(api, state: str) -> str:
    """A fresh task in `state`, reached the way a client would; returns its id."""
    if state == "blocked":  # waits for a task that stays assigned
        task_id = api.create(depends_on=[api.create()["task_id"]])["task_id"]
    elif state == "scheduled":
        task_id = api.create(delay_seconds=3600)["task_id"]
    else:
        task_id = api.create(priority="P0" if state == "awaiting_approval" else "P3")["task_id"]
    if state == "in_progress":
        assert api.claim()["task_id"] == task_id
    elif state in ("completed", "failed", "cancelled"):
        api.status(task_id, state)
    assert api.task(task_id)["status"] == state
    return task_id


@pytest.mark.parametrize(("current", "requested"), list(itertools.product(STATUSES, STATUSES)))
def test_every_transition_follows_the_life_cycle(app, api, redis_server, current, requested):
    task_id = reach(api, current)
    events_before = stream_types(redis_server.client(), app, task_id)
    allowed = requested in ALLOWED[current]
    response = api.status(task_id, requested, expect=200 if allowed else 409)
    stored = api.task(task_id)
    counts = api.stats()["tasks"]
    events_after = stream_types(redis_server.client(), app, task_id)
    if allowed:
        assert response["task"]["status"] == stored["status"] == requested
        assert response["message"] == f"Task is now {requested}"
        assert events_after[len(events_before) :][-1] == f"task.{requested}"
        final = requested
    else:
        assert response == {
            "detail": f"Task is {current}; cannot move it to {requested}",
            "current_status": current,
        }
        assert events_after == events_before
        final = current
    assert stored["status"] == final
    dependency = {"assigned": 1} if current == "blocked" else {}
    assert counts == {state: int(state == final) + dependency.get(state, 0) for state in STATUSES}


def test_cancelling_a_gated_task_withdraws_its_approval(api):
    task_id = reach(api, "awaiting_approval")
    api.status(task_id, "cancelled")
    assert api.call("GET", "/approvals/pending")["count"] == 0
    api.approve(f"apr-{task_id}", expect=409)
    assert api.task(task_id)["status"] == "cancelled"


def test_fields_that_follow_a_transition(api):
    task_id = reach(api, "assigned")
    started = api.status(task_id, "in_progress", as_="ops")["task"]
    assert started["started_at"] and started["lease_expires_at"]
    assert started["claimed_by"] == "apikey:ops" and started["completed_at"] is None
    failed = api.status(task_id, "failed", as_="ops", error="boom")["task"]
    assert (failed["status"], failed["error"]) == ("failed", "boom")
    assert failed["completed_at"] and failed["lease_expires_at"] is None
    assert failed["started_at"] == started["started_at"]


def test_a_started_task_heartbeats_like_a_claimed_one(api):
    task_id = reach(api, "assigned")
    api.status(task_id, "in_progress")
    assert api.heartbeat(task_id, lease_seconds=600)["task"]["status"] == "in_progress"
    api.claim(expect=204)
