"""Queue and task counters for /health and /stats, read in one script call."""

from __future__ import annotations

from app.domain.delivery import webhook_health
from app.domain.model import STATUSES
from app.domain.scripts import Scripts


class StatsReader:
    """Reads the exact counters the task and approval scripts maintain."""

    def __init__(self, scripts: Scripts):
        self.scripts = scripts

    def read(self, settle_budget: int = 100) -> dict:
        """queue_stats, tasks by status, queued per agent, pending approvals, Redis time,
        and the deliverers' backlog."""
        raw = self.scripts.read_stats(settle_budget=settle_budget)
        # An empty hash comes back as {} from Redis' cjson but [] from fakeredis'.
        counts, totals, agents = (raw[name] or {} for name in ("counts", "totals", "agents"))
        counts = {s: max(0, int(counts.get(s, 0))) for s in STATUSES}
        queue = {
            "pending": counts["assigned"],
            "in_progress": counts["in_progress"],
            "completed": int(totals.get("completed", 0)),
            "failed": int(totals.get("failed", 0)),
            "cancelled": int(totals.get("cancelled", 0)),
            "awaiting_approval": counts["awaiting_approval"],
            "scheduled": counts["scheduled"],
            "blocked": counts["blocked"],
        }
        return {
            "queue": queue,
            "tasks": counts,
            "agents": {name: int(n) for name, n in sorted(agents.items())},
            "approvals": {"pending": int(raw["pending_approvals"])},
            "timestamp": raw["now"],
            "memory": {"used_bytes": raw["memory"]["used"], "max_bytes": raw["memory"]["max"]},
            "webhooks": webhook_health(raw.get("webhooks") or {}),
        }
