"""The approval gate: pending, history and decisions on gated tasks."""

from __future__ import annotations

from typing import Literal

from app.config import Settings
from app.domain import ids
from app.domain.records import approval_record, task_record
from app.domain.scripts import Scripts, rows
from app.errors import Conflict, Forbidden, NotFound

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
        *,
        approve: bool,
        reason: str | None = None,
        comment: str | None = None,
    ) -> tuple[dict, dict]:
        """Approve or reject; returns (approval, task). Exactly one decision ever wins."""
        reply = self.scripts.decide_approval(
            approval_id=ids.check_approval_id(approval_id),
            decision="approved" if approve else "rejected",
            principal=principal,
            reason=reason or None,
            comment=comment or None,
        )
        approval = _approval(reply)
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


def _approval(reply: dict) -> dict:
    """The approval a script answered with, or the error its outcome stands for."""
    outcome = reply["outcome"]
    if outcome == "not_found":
        raise NotFound("Approval not found")
    if outcome == "conflict":
        # The loser of a race learns who won: the current state comes with the 409.
        raise Conflict(
            f"Approval is already {reply['status']}",
            extra={
                "current_status": reply["status"],
                "approval": approval_record(reply["approval"]),
            },
        )
    if outcome == "forbidden":
        raise Forbidden("The principal that created a task cannot approve it (four-eyes rule)")
    return approval_record(reply["approval"])
