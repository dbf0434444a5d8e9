"""Redis key layout, in one place. Lua scripts build the same names from the prefix.

| key                               | type   | holds                                          |
|-----------------------------------|--------|------------------------------------------------|
| <p>:task:<task_id>                | hash   | one task's fields                               |
| <p>:tasks                         | zset   | every stored task, scored by creation sequence  |
| <p>:seq                           | string | the creation sequence                           |
| <p>:queue:<agent>                 | zset   | ready tasks, rank*1e15 + seq (priority, FIFO)   |
| <p>:agents                        | set    | agents that ever had a queue                    |
| <p>:leases                        | zset   | running tasks, scored by lease expiry (ms)      |
| <p>:expiring                      | zset   | terminal tasks, scored by purge time (ms)       |
| <p>:counts                        | hash   | tasks stored now, per status                    |
| <p>:totals                        | hash   | completed / failed / cancelled ever reached     |
| <p>:idem:<sha256(principal, key)> | string | idempotency record, 24 h                        |
| <p>:approval:<approval_id>        | hash   | one approval record                             |
| <p>:approvals:pending             | zset   | pending approvals, by request order             |
| <p>:approvals:deadlines           | zset   | pending approvals, by expiry (ms)               |
| <p>:approvals:history             | zset   | decided approvals, by decision time (ms)        |
| <p>:events                        | stream | the event log (approximately trimmed)           |
| <p>:events:<type>, <p>:events:*   | pubsub | live fan-out channels                           |
| <p>:ratelimit:...                 | list   | flask-limiter moving windows                    |
"""

from __future__ import annotations

import hashlib


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def task(self, task_id: str) -> str:
        """A task's hash."""
        return f"{self.prefix}:task:{task_id}"

    def tasks(self) -> str:
        """Every stored task, by creation sequence."""
        return f"{self.prefix}:tasks"

    def queue(self, agent: str) -> str:
        """An agent's ready queue."""
        return f"{self.prefix}:queue:{agent}"

    def leases(self) -> str:
        """Running tasks by lease expiry."""
        return f"{self.prefix}:leases"

    def counts(self) -> str:
        """Stored tasks per status."""
        return f"{self.prefix}:counts"

    def idempotency(self, principal: str, idempotency_key: str) -> str:
        """One principal's idempotency record for a key (hashed)."""
        digest = hashlib.sha256(f"{principal}\0{idempotency_key}".encode()).hexdigest()
        return f"{self.prefix}:idem:{digest}"

    def approval(self, approval_id: str) -> str:
        """An approval's hash."""
        return f"{self.prefix}:approval:{approval_id}"

    def events(self) -> str:
        """The event stream."""
        return f"{self.prefix}:events"

    def event_channel(self, event_type: str) -> str:
        """The pub/sub channel of one event type."""
        return f"{self.prefix}:events:{event_type}"

    def rate_limits(self) -> str:
        """Prefix of flask-limiter's windows."""
        return f"{self.prefix}:ratelimit"
