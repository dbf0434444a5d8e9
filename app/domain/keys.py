"""The Redis key layout, defined once: Python names keys through Keys, Lua through key().

LAYOUT is the single table: scripts.py writes it into the Lua prelude (so a script
can only name keys listed here), ARCHITECTURE.md shows it (a test checks the two
agree), and every name is `{<prefix>}:` + the pattern with its {placeholders} filled.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class KeySpec:
    """One kind of key: its pattern under the prefix, Redis type and what it holds."""

    pattern: str
    type: str
    holds: str


LAYOUT: dict[str, KeySpec] = {
    "task": KeySpec(
        "task:{task_id}",
        "hash",
        "one task's fields, less its id (the key's) and those at their default (model.py);"
        " `events`: the ids of its events while few (lib.lua)",
    ),
    "by_status": KeySpec(
        "tasks:status:{status}", "zset", "stored tasks in one status, by creation sequence"
    ),
    "by_route": KeySpec(
        "tasks:route:{type}:{agent}",
        "zset",
        "stored tasks of one type routed to one agent, by creation sequence (a type's"
        " listing merges its agents', an agent's its types')",
    ),
    "routes": KeySpec("routes", "set", "`{type}:{agent}` of every route index ever made"),
    "task_events": KeySpec(
        "task_events:{task_id}",
        "list",
        "the stream ids of one task's events once they outgrow its `events` field (never"
        " both), or about a task id not stored (expiring); go with the task",
    ),
    "seq": KeySpec("seq", "string", "the creation sequence"),
    "queue": KeySpec("queue:{agent}", "zset", "ready tasks, rank*1e15 + seq (priority, FIFO)"),
    "agents": KeySpec("agents", "set", "agents that ever had a queue"),
    "leases": KeySpec("leases", "zset", "running tasks, scored by lease expiry (ms)"),
    "running": KeySpec("running", "hash", "leases held now, per agent (concurrency caps)"),
    "scheduled": KeySpec("scheduled", "zset", "scheduled tasks, scored by run time (ms)"),
    "dependants": KeySpec(
        "dependants:{task_id}", "set", "blocked tasks waiting for this task to finish"
    ),
    "expiring": KeySpec("expiring", "zset", "terminal tasks, scored by purge time (ms)"),
    "timers": KeySpec(
        "timers", "zset", "per kind of deadline, a lower bound of its earliest (ms); `~` at +inf"
    ),
    "totals": KeySpec(
        "totals", "hash", "completed / failed / cancelled ever reached, lease_expired"
    ),
    "idempotency": KeySpec("idem:{digest}", "string", "sha256(principal, key) -> first reply"),
    "approval": KeySpec("approval:{approval_id}", "hash", "one approval record"),
    "approvals_pending": KeySpec("approvals:pending", "zset", "pending approvals, by request"),
    "approvals_deadlines": KeySpec(
        "approvals:deadlines", "zset", "pending approvals, by expiry (ms)"
    ),
    "approvals_history": KeySpec(
        "approvals:history", "zset", "decided approvals, by decision time (ms)"
    ),
    "events": KeySpec(
        "events",
        "stream",
        "the event log (approximately trimmed); entries: type, task_id, source_agent "
        "('' for the service's own), data (a status change's payload as p, less its usual "
        "values; a task.created's values as the list c, without its priority)",
    ),
    "event_channel": KeySpec(
        "events:{event_type}", "pubsub", "live fan-out: one channel per type, and `*`"
    ),
    "rate_limits": KeySpec("ratelimit", "prefix", "the rate limiter's windows"),
    "auth_failures": KeySpec(
        "authfail:{address}", "string", "failed authentications from one address this minute"
    ),
    "webhook": KeySpec("webhook:{webhook_id}", "hash", "one subscription (secret encrypted)"),
    "webhooks": KeySpec("webhooks", "zset", "every subscription, by creation time (ms)"),
    "delivery": KeySpec("delivery:{delivery_id}", "hash", "one event's delivery to one webhook"),
    "deliveries": KeySpec(
        "deliveries:{webhook_id}", "zset", "a webhook's deliveries, by creation (newest kept)"
    ),
    "deliveries_due": KeySpec(
        "deliveries:due", "zset", "pending deliveries, by next attempt or lease end (ms)"
    ),
    "delivery_totals": KeySpec(
        "deliveries:totals", "hash", "delivered / dead / attempts ever counted"
    ),
    "call": KeySpec(
        "call:{call_id}",
        "string",
        "a write's first reply, kept SENT_ONCE_MS: the same call sent again answers it",
    ),
    "decision_link": KeySpec(
        "link:{digest}", "string", "a decision link that was used (single use)"
    ),
    "stats_snapshot": KeySpec(
        "stats:figures",
        "string",
        "the last /health and /stats figures, while nothing changed (read_stats.lua)",
    ),
    "agent_activity": KeySpec(
        "agent:{agent}", "hash", "an agent's last_claim_at / last_heartbeat_at (Redis time)"
    ),
}

# A stored task's event index while it is short: this field of its hash (no task field
# has its name), at most this many bytes (Redis' default hash-max-listpack-value: a longer
# value would turn the whole hash into a hashtable); longer, the task_events list.
EVENTS_FIELD = "events"
EVENTS_FIELD_MAX = 64

# The consumer group deliverers read the event stream through.
DELIVERY_GROUP = "deliverers"

# Deliveries a subscription's log keeps (its newest); an older one leaves it once it is
# delivered or dead, never while pending: the receiver is still owed it.
DELIVERIES_KEPT = 1000

# How long a create's idempotency record is kept (a retry within it replays the answer).
IDEMPOTENCY_TTL_SECONDS = 24 * 3600

# How long a write's first reply is kept for the same call sent again (lib.lua, once):
# redis-py re-sends within its retries' backoff and reconnects, well inside this.
SENT_ONCE_MS = 10_000


def hash_tag(prefix: str) -> str:
    """`{<prefix>}`: the part of every key name Redis Cluster hashes to pick the slot."""
    return "{" + prefix + "}"


class Keys:
    """Key names under one deployment's prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        # The hash tag puts every key of a deployment in one Redis Cluster slot, so each
        # script's keys live on one node; `tag` doubles as the key scripts are routed by.
        self.tag = hash_tag(prefix)

    def name(self, kind: str, *parts: str) -> str:
        """`{<prefix>}:` + LAYOUT[kind]'s pattern with `parts` in its placeholders, in order."""
        pattern = LAYOUT[kind].pattern
        for part in parts:
            start = pattern.index("{")
            pattern = pattern[:start] + part + pattern[pattern.index("}", start) + 1 :]
        return f"{self.tag}:{pattern}"

    def task(self, task_id: str) -> str:
        """A task's hash."""
        return self.name("task", task_id)

    def queue(self, agent: str) -> str:
        """An agent's ready queue."""
        return self.name("queue", agent)

    def event_channel(self, event_type: str) -> str:
        """The pub/sub channel of one event type (`*` for every event)."""
        return self.name("event_channel", event_type)

    def idempotency(self, principal: str, idempotency_key: str) -> str:
        """One principal's idempotency record for a key (hashed: keys are client text)."""
        digest = hashlib.sha256(f"{principal}\0{idempotency_key}".encode()).hexdigest()
        return self.name("idempotency", digest)


def migrate_unbraced(client, prefix: str) -> int:
    """Rename every `<prefix>:*` key (the layout before the hash tag) to `{<prefix>}:*`.

    For a single node with the service stopped; a key that exists under both names keeps
    the new one. Returns how many keys were renamed.
    """
    renamed = 0
    for name in client.scan_iter(match=f"{prefix}:*", count=1000):
        renamed += bool(client.renamenx(name, f"{hash_tag(prefix)}:{name[len(prefix) + 1 :]}"))
    return renamed


def lua_layout() -> dict[str, str]:
    """LAYOUT as string.format patterns ({placeholders} -> %s), for the scripts' key()."""
    return {
        kind: re.sub(r"\{[a-z_]+\}", "%s", spec.pattern.replace("%", "%%"))
        for kind, spec in LAYOUT.items()
    }
