"""The approval gate: pending, history and decisions on gated tasks."""

from __future__ import annotations

import json
from typing import Literal

from app.config import Settings
from app.domain import approval_policy, ids, policy
from app.domain.records import approval_record, task_record
from app.domain.scripts import Scripts, rows
from app.errors import Conflict, Forbidden, NotFound, ValidationFailed

PENDING_PAGE = 1000


class ApprovalGate:
    """Approvals in Redis. Every read and decision first applies due timeouts."""

    def __init__(self, scripts: Scripts, settings: Settings):
        self.scripts = scripts
        self.settings = settings

    def get(self, approval_id: str) -> dict:
        """One approval; 404 when unknown or past its history TTL."""
        return _approval(self.scripts.get_approval(approval_id=ids.check_approval_id(approval_id)))

    def pending(self) -> list[dict]:
        """Pending approvals, oldest first."""
        return self._list("pending", PENDING_PAGE)

    def history(self, limit: int) -> list[dict]:
        """Decided and timed-out approvals, newest first."""
        return self._list("history", min(limit, self.settings.max_approval_history))

    def decide(
        self,
        approval_id: str,
        principal: str,
        role: str,
        *,
        approve: bool,
        reason: str | None = None,
        comment: str | None = None,
        payload: dict | None = None,
        expected_sha256: str | None = None,
        act: tuple[str, ...] = (),
    ) -> tuple[dict, dict]:
        """Approve (maybe with an edited payload) or reject; returns (approval, task).

        Atomic: approvals count once per principal, the task is released exactly once.
        Four eyes compares every identity of the decider's `act` chain with the requester's.
        """
        edit = payload is not None and approve
        reply = self.scripts.decide_approval(
            approval_id=ids.check_approval_id(approval_id),
            decision="approved" if approve else "rejected",
            principal=principal,
            role=role,
            groups=self.settings.approval_policy.groups_of(principal),
            decider_identities=policy.identities(principal, act),
            act=list(act) or None,
            reason=reason or None,
            comment=comment or None,
            payload=json.dumps(payload) if edit else None,
            payload_sha256=approval_policy.canonical_sha256(payload) if edit else None,
            payload_keys=approval_policy.key_hashes(payload) if edit else None,
            expected_sha256=expected_sha256 or None,
        )
        approval = _approval(reply, principal)
        return approval, task_record(reply["task"]) if reply.get("task") else None

    def link_used(self, digest: str) -> bool:
        """Whether a decision link was used (reads only)."""
        reply = self.scripts.spend_link(digest=digest, ttl_ms=1, release=None, peek=True)
        return reply["outcome"] == "conflict"

    def spend_link(self, digest: str) -> bool:
        """Mark a decision link used; False when it already was (single use)."""
        ttl_ms = self.settings.approval_history_ttl * 1000
        reply = self.scripts.spend_link(digest=digest, ttl_ms=ttl_ms, release=None, peek=None)
        return reply["outcome"] == "ok"

    def release_link(self, digest: str) -> None:
        """Mark a decision link unused again: its decision was refused."""
        self.scripts.spend_link(digest=digest, ttl_ms=1, release=True, peek=None)

    def _list(self, view: Literal["pending", "history"], limit: int) -> list[dict]:
        reply = self.scripts.list_approvals(view=view, limit=limit)
        return [approval_record(approval) for approval in rows(reply["approvals"])]


_FORBIDDEN = {
    "four_eyes": "The principal that created a task cannot approve it (four-eyes rule)",
    "ineligible": "You are not among the approvers this approval names (see its eligible)",
}


def _approval(reply: dict, principal: str = "") -> dict:
    """The approval a script answered with, or the error its outcome stands for."""
    outcome = reply["outcome"]
    if outcome == "not_found":
        raise NotFound("Approval not found")
    if outcome == "conflict":
        # The loser of a race learns who won: the current state comes with the 409.
        detail = {
            "repeat": f"{principal} has already approved this payload version",
            "stale": "The payload changed since you read it; review the new one",
        }.get(reply.get("why"), f"Approval is already {reply['status']}")
        raise Conflict(
            detail,
            extra={
                "current_status": reply["status"],
                "approval": approval_record(reply["approval"]),
            },
        )
    if outcome == "forbidden":
        raise Forbidden(_FORBIDDEN[reply["why"]])
    if outcome == "reason":
        raise ValidationFailed(
            "A rejection needs a reason",
            errors={"reason": ["Missing data for required field."]},
        )
    return approval_record(reply["approval"])
