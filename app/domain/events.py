"""The event bus: a Redis Stream for replay plus pub/sub channels for live subscribers."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

from app.domain.scripts import Scripts

EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
PRIORITIES = ("critical", "high", "medium", "low")
PRIORITY_ALIASES = {"P0": "critical", "P1": "high", "P2": "medium", "P3": "low"}
# Events the service itself emits, listed in the OpenAPI spec.
WELL_KNOWN_TYPES = (
    "task.created", "task.assigned", "task.awaiting_approval", "task.in_progress",
    "task.completed", "task.failed", "task.cancelled", "task.requeued",
    "approval.requested", "approval.approved", "approval.rejected", "approval.timeout",
)
READ_SCAN_BUDGET = 20000


def normalize_priority(priority: str | None) -> str:
    """critical/high/medium/low, with P0-P3 accepted as aliases."""
    if not priority:
        return "medium"
    return PRIORITY_ALIASES.get(priority, priority)


def to_cloudevent(event: dict) -> dict:
    """The same event as CloudEvents 1.0 (JSON format)."""
    extensions = {"taskid": event["task_id"], "traceid": event["trace_id"],
                  "priority": event["priority"]}
    return {
        "specversion": "1.0", "id": event["event_id"], "type": event["event_type"],
        "source": f"/agents/{event['source_agent']}", "time": event["timestamp"],
        "datacontenttype": "application/json", "data": event["payload"],
        **{k: v for k, v in extensions.items() if v is not None},
    }


class EventBus:
    """Publish and replay events; one script call each."""

    def __init__(self, scripts: Scripts):
        self.scripts = scripts

    def publish(self, *, event_type: str, source_agent: str, payload: dict,
                task_id: str | None = None, trace_id: str | None = None,
                priority: str | None = None, metadata: dict | None = None) -> dict:
        """Store and fan out one event; returns its envelope with `event_id`."""
        envelope = {
            "event_type": event_type, "source_agent": source_agent, "task_id": task_id,
            "trace_id": trace_id or uuid.uuid4().hex, "priority": normalize_priority(priority),
            "payload": payload, "metadata": metadata or {},
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
        }
        data = json.dumps(envelope, separators=(",", ":"))
        event_id = self.scripts.run("publish_event", event_type, task_id or "", source_agent,
                                    data)
        return {"event_id": event_id, **envelope}

    def read(self, *, order: str = "desc", after: str | None = None,
             before: str | None = None, limit: int = 100, event_type: str | None = None,
             task_id: str | None = None, source_agent: str | None = None):
        """One page of stored events and the cursor for the next one."""
        start, stop = (after, before) if order == "asc" else (before, after)
        reply = self.scripts.run(
            "read_events", order, start or "", limit, event_type or "", task_id or "",
            source_agent or "", READ_SCAN_BUDGET, stop or "",
        )
        events = [{"event_id": reply[i], **json.loads(reply[i + 1])}
                  for i in range(1, len(reply), 2)]
        return events, reply[0] or None
