"""The deliverers' side of webhooks: the event stream's consumer group and the schedule.

Reading the group (XREADGROUP, XAUTOCLAIM) is plain Redis calls, since a script may not
block; every change to deliveries is a script (fan_out, claim_deliveries, record_attempt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import redis

from app.config import Settings
from app.domain.events import envelope_of
from app.domain.keys import DELIVERY_GROUP, Keys
from app.domain.scripts import Scripts, rows
from app.domain.sealing import SecretBox


@dataclass(frozen=True)
class Attempt:
    """One leased delivery: what to send, where, signed with which secret."""

    delivery: dict
    webhook: dict
    # None: no configured key opens it (the key was rotated). Kept out of repr, so a
    # traceback's local variables (logs, Sentry) never show it.
    secret: str | None = field(repr=False)

    @property
    def number(self) -> int:
        """This attempt's number, 1 for the first."""
        return int(self.delivery["attempts"])

    @property
    def in_series(self) -> int:
        """Its number since the delivery was last retried by hand (1 for the first after
        it): the backoff starts over with a manual retry."""
        return self.number - int(self.delivery.get("retry_base") or 0)


def _entries(messages) -> list[dict]:
    """Stream entries as fan_out wants them: the envelope with its event_id."""
    entries = []
    for entry_id, fields in messages:
        if not fields:  # trimmed away while pending: nothing left to deliver
            entries.append({"entry_id": entry_id})
            continue
        envelope = envelope_of(entry_id, fields)  # as GET /events shows it
        entries.append(
            {
                "entry_id": entry_id,
                "event_id": entry_id,
                "event_type": fields["type"],
                "data": json.dumps(envelope, separators=(",", ":")),
            }
        )
    return entries


class DeliveryQueue:
    """Events in, attempts out, for any number of deliverers sharing one group."""

    def __init__(self, client: redis.Redis, scripts: Scripts, settings: Settings):
        self.client = client
        self.scripts = scripts
        self.keys = Keys(settings.queue_prefix)
        self.stream = self.keys.name("events")
        self.box = SecretBox(settings)
        self.lease_ms = settings.webhook_reclaim_seconds * 1000

    def ensure_group(self) -> None:
        """Create the consumer group at the stream's end unless it exists."""
        try:
            self.client.xgroup_create(self.stream, DELIVERY_GROUP, id="$", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def leave(self, consumer: str) -> None:
        """Drop a stopping deliverer from the group, unless it still holds entries."""
        if not self.client.xpending_range(self.stream, DELIVERY_GROUP, "-", "+", 1, consumer):
            self.client.xgroup_delconsumer(self.stream, DELIVERY_GROUP, consumer)

    def read_new(self, consumer: str, count: int, block_ms: int) -> list[dict]:
        """Entries no deliverer has read yet (waits up to block_ms for one)."""
        reply = self.client.xreadgroup(
            DELIVERY_GROUP, consumer, {self.stream: ">"}, count=count, block=block_ms or None
        )
        return _entries(reply[0][1]) if reply else []

    def reclaim(self, consumer: str, count: int) -> list[dict]:
        """Entries another deliverer read but did not acknowledge in time (it died)."""
        reply = self.client.xautoclaim(
            self.stream, DELIVERY_GROUP, consumer, self.lease_ms, "0-0", count=count
        )
        return _entries(reply[1])

    def fan_out(self, entries: list[dict]) -> int:
        """Make the deliveries of these entries and acknowledge them; how many were made."""
        if not entries:
            return 0
        events = [e for e in entries if "event_id" in e]
        ack = [e["entry_id"] for e in entries]
        return len(rows(self.scripts.fan_out(entries=events, webhook_id=None, ack=ack)["created"]))

    def claim(self, limit: int) -> tuple[list[Attempt], int]:
        """Lease due deliveries to this deliverer (attempts counted), and Redis' time (s)."""
        reply = self.scripts.claim_deliveries(limit=limit, lease_ms=self.lease_ms)
        attempts = [
            Attempt(c["delivery"], c["webhook"], self.box.open(c["webhook"]["secret_sealed"]))
            for c in rows(reply["claimed"])
        ]
        return attempts, reply["now_ms"] // 1000

    def record(
        self,
        attempt: Attempt,
        *,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        delay_ms: int,
    ) -> dict:
        """Store one attempt's outcome; a failure is retried after delay_ms or dead."""
        return self.scripts.record_attempt(
            delivery_id=attempt.delivery["delivery_id"],
            attempt=attempt.number,
            series=attempt.delivery.get("first_due_ms"),
            delivered=delivered,
            status_code=status_code,
            error=error,
            delay_ms=delay_ms,
        )


def _number(value) -> int | None:
    # Redis answers nil (false in Lua) for a lag it cannot tell.
    return int(value) if isinstance(value, int | str) and not isinstance(value, bool) else None


def webhook_health(raw: dict) -> dict:
    """Lag and unacknowledged entries of the group, pending deliveries, totals."""
    group = raw.get("group") or None
    totals = raw.get("totals") or {}
    return {
        "consumer_group": "ready" if group else "missing",
        "lag": _number(group.get("lag")) if group else None,
        "unacknowledged": _number(group.get("pending")) if group else None,
        "consumers": _number(group.get("consumers")) if group else None,
        "pending_deliveries": _number(raw.get("due")),
        "delivered": int(totals.get("delivered", 0)),
        "dead": int(totals.get("dead", 0)),
        "attempts": int(totals.get("attempts", 0)),
    }
