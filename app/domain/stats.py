"""Queue and task counters for /health, /stats and /metrics, and the agents at work."""

from __future__ import annotations

from datetime import datetime

from app.domain.delivery import webhook_health
from app.domain.model import STATUSES
from app.domain.scripts import Scripts, rows


def age_seconds(since: str | None, now: str) -> float | None:
    """Seconds from one Redis-clock ISO time to another (None when there is no `since`)."""
    if not since:
        return None
    elapsed = datetime.fromisoformat(now) - datetime.fromisoformat(since)
    return round(max(0.0, elapsed.total_seconds()), 3)


class StatsReader:
    """Reads the exact counters the task and approval scripts maintain."""

    def __init__(self, scripts: Scripts):
        self.scripts = scripts

    def read(self, settle_budget: int = 100) -> dict:
        """queue_stats, tasks by status, queued per agent, pending approvals, Redis time.

        Also what /health and /metrics show on top: the age of each agent's oldest ready
        task and of the oldest pending approval, lease expiries ever, Redis memory and
        the deliverers' backlog.
        """
        raw = self.scripts.read_stats(settle_budget=settle_budget)
        # An empty hash comes back as {} from Redis' cjson but [] from fakeredis'.
        counts, totals, agents, oldest = (
            raw.get(name) or {} for name in ("counts", "totals", "agents", "oldest")
        )
        counts = {s: max(0, int(counts.get(s, 0))) for s in STATUSES}
        queue = {
            # "pending" is the name the deployment guide's health check uses; the status
            # itself is "assigned", and "queued" says what it counts.
            "pending": counts["assigned"],
            "queued": counts["assigned"],
            "in_progress": counts["in_progress"],
            "completed": int(totals.get("completed", 0)),
            "failed": int(totals.get("failed", 0)),
            "cancelled": int(totals.get("cancelled", 0)),
            "awaiting_approval": counts["awaiting_approval"],
            "scheduled": counts["scheduled"],
            "blocked": counts["blocked"],
        }
        now = raw["now"]
        return {
            "queue": queue,
            "tasks": counts,
            "agents": {name: int(n) for name, n in sorted(agents.items())},
            "approvals": {"pending": int(raw["pending_approvals"])},
            "timestamp": now,
            "oldest_waiting_seconds": {
                name: age_seconds(created, now) for name, created in sorted(oldest.items())
            },
            "oldest_approval_seconds": age_seconds(raw.get("oldest_approval"), now),
            "lease_expiries": int(totals.get("lease_expired", 0)),
            "memory": {"used_bytes": raw["memory"]["used"], "max_bytes": raw["memory"]["max"]},
            "webhooks": webhook_health(raw.get("webhooks") or {}),
        }

    def agents(self, routed: tuple[str, ...], settle_budget: int = 100) -> list[dict]:
        """Every agent seen or routed to: queued, in_progress, last claim and heartbeat."""
        raw = self.scripts.list_agents(routed=list(routed), settle_budget=settle_budget)
        return rows(raw["agents"])
