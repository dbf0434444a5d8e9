"""The approval gate: pending, history and decisions on gated tasks."""

from __future__ import annotations

from app.config import Settings
from app.domain import ids
from app.domain.records import approval_record, task_record
from app.domain.scripts import Scripts
from app.errors import Conflict, Forbidden, NotFound

PENDING_PAGE = 1000


class ApprovalGate:
    """Approvals in Redis. Every read and decision first applies due timeouts."""

    def __init__(self, scripts: Scripts, settings: Settings):
        self.scripts = scripts
        self.settings = settings

    def get(self, approval_id: str) -> dict:
        """One approval; 404 when unknown or past its history TTL."""
        flats = self.scripts.run("read_approvals", "one", ids.check_approval_id(approval_id))
        if not flats or not flats[0]:
            raise NotFound("Approval not found")
        return approval_record(flats[0])

    def pending(self) -> list[dict]:
        """Pending approvals, oldest first."""
        return [
            approval_record(f) for f in self.scripts.run("read_approvals", "pending", PENDING_PAGE)
        ]

    def history(self, limit: int) -> list[dict]:
        """Decided and timed-out approvals, newest first."""
        limit = min(limit, self.settings.max_approval_history)
        return [approval_record(f) for f in self.scripts.run("read_approvals", "history", limit)]

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
        reply = self.scripts.run(
            "decide_approval",
            ids.check_approval_id(approval_id),
            "approved" if approve else "rejected",
            principal,
            reason or "",
            comment or "",
        )
        if reply[0] == "not_found":
            raise NotFound("Approval not found")
        if reply[0] == "conflict":
            # The loser of a race learns who won: the current state comes with the 409.
            raise Conflict(
                f"Approval is already {reply[1]}",
                extra={"current_status": reply[1], "approval": approval_record(reply[2])},
            )
        if reply[0] == "forbidden":
            raise Forbidden("The principal that created a task cannot approve it (four-eyes rule)")
        task = task_record(reply[2]) if reply[2] else None
        return approval_record(reply[1]), task
