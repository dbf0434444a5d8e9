"""The event bus: a Redis Stream for replay plus pub/sub channels for live subscribers."""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from urllib.parse import quote

from app.domain.model import (
    CREATED_PAYLOAD,
    DEFAULT_EVENT_PRIORITY,
    EVENT_PRIORITIES,
    SERVICE_SOURCE,
)
from app.domain.records import stamp_ms
from app.domain.scripts import Scripts, rows
from app.errors import Forbidden

# Use fullmatch(): with match(), `$` also accepts a trailing newline ("task.done\n").
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
EVENT_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
# Both halves of a stream id are unsigned 64-bit; Redis rejects anything larger.
MAX_ID_PART = 2**64 - 1
FIRST_POSITION = "0-0"  # before every real entry: XADD never issues 0-0
# An event's priority, most urgent first; its task's priority (P0-P3) is accepted too.
PRIORITIES = tuple(EVENT_PRIORITIES.values())
PRIORITY_ALIASES = dict(EVENT_PRIORITIES)
# Events the service itself emits, listed in the OpenAPI spec.
WELL_KNOWN_TYPES = (
    "task.created",
    "task.assigned",
    "task.awaiting_approval",
    "task.in_progress",
    "task.completed",
    "task.failed",
    "task.cancelled",
    "task.requeued",
    "approval.requested",
    "approval.approved",
    "approval.rejected",
    "approval.timeout",
    "approval.edited",
    "approval.escalated",
)
# Families and the source the service itself emits under (SERVICE_SOURCE): a client
# publishing them could forge an approval or a task change that replays exactly like the
# service's own.
RESERVED_FAMILIES = ("task", "approval", "webhook")
# What a client's event stores in `data`; the rest are the stream entry's own fields.
STORED_BY_CLIENT = ("published_by", "trace_id", "priority", "payload", "metadata")
# A status change's payload (lib.lua, move()) after its task_id, in the order the service
# writes it. Its entry's `data` holds it as "p", less these values and a status that is
# the event type's suffix (task.assigned: assigned); envelope_of puts them back.
STATUS_CHANGE = ("assigned_to", "previous_status", "status", "error", "retry_count")
STATUS_CHANGE_UNSTORED = {"previous_status": None, "error": None, "retry_count": 0}
# Stream entries one filtered read examines at most (by type or source; a task's events
# come from its own index): a rare filter answers a short page with a cursor to go on
# from rather than hold Redis for long.
READ_SCAN_BUDGET = 2000


def normalize_priority(priority: str | None) -> str:
    """critical/high/medium/low, with P0-P3 accepted as aliases."""
    if not priority:
        return DEFAULT_EVENT_PRIORITY
    return PRIORITY_ALIASES.get(priority, priority)


def parse_event_id(event_id: str) -> tuple[int, int] | None:
    """(milliseconds, sequence) of a well-formed stream id, else None."""
    if not EVENT_ID.fullmatch(event_id):
        return None
    ms, seq = (int(part) for part in event_id.split("-"))
    return (ms, seq) if ms <= MAX_ID_PART and seq <= MAX_ID_PART else None


def to_cloudevent(event: dict) -> dict:
    """The same event as CloudEvents 1.0 (JSON format)."""
    extensions = {
        "taskid": event["task_id"],
        "traceid": event["trace_id"],
        "priority": event["priority"],
    }
    return {
        "specversion": "1.0",
        "id": event["event_id"],
        "type": event["event_type"],
        # `source` is a URI-reference: an agent name with spaces or slashes is escaped.
        "source": f"/agents/{quote(event['source_agent'], safe='')}",
        "time": event["timestamp"],
        "datacontenttype": "application/json",
        "data": event["payload"],
        **{k: v for k, v in extensions.items() if v is not None},
    }


def envelope_of(event_id: str, fields: dict) -> dict:
    """A stored event's envelope, in the documented field order, from its stream entry.

    The entry states each fact once (lib.lua, emit_raw and emit): `type`, `task_id` and
    `source_agent` ('' for the service's own) are its fields, the timestamp is its id's
    milliseconds unless `data` carries one, and `data` leaves out a trace_id equal to the
    task id, the default priority, empty metadata and, in the service's own events, the
    payload's task_id; a status change's payload is "p", less its usual values, and a
    task.created's is "c", its values alone (model.CREATED_PAYLOAD), without the priority
    its payload's decides. Entries written before carry the service's source, the whole
    payload or the whole envelope, which read back the same way.
    """
    stored = json.loads(fields["data"])
    task_id = fields["task_id"] or None
    source_agent = fields["source_agent"] or SERVICE_SOURCE
    priority = DEFAULT_EVENT_PRIORITY
    if "c" in stored:
        payload = dict(zip(CREATED_PAYLOAD, stored["c"], strict=True))
        priority = EVENT_PRIORITIES.get(payload["priority"], DEFAULT_EVENT_PRIORITY)
    elif "p" in stored:
        payload = _status_change(fields["type"], stored["p"])
    else:
        payload = stored.get("payload")
    if source_agent == SERVICE_SOURCE and task_id and "task_id" not in payload:
        payload = {"task_id": task_id, **payload}  # the service's payloads name their task
    return {
        "event_id": event_id,
        "event_type": fields["type"],
        "source_agent": source_agent,
        # The service's own events are published by the service.
        "published_by": stored.get("published_by")
        or (SERVICE_SOURCE if source_agent == SERVICE_SOURCE else None),
        "task_id": task_id,
        "trace_id": stored["trace_id"] if "trace_id" in stored else task_id,
        "priority": stored.get("priority", priority),
        "payload": payload,
        "metadata": stored.get("metadata") or {},
        "timestamp": stored.get("timestamp") or stamp_ms(int(event_id.split("-", 1)[0])),
    }


def _status_change(event_type: str, stored: dict) -> dict:
    """A status change's payload from what its entry keeps, in the order it is written."""
    whole = {**STATUS_CHANGE_UNSTORED, "status": event_type.partition(".")[2], **stored}
    return {name: whole.pop(name) for name in STATUS_CHANGE if name in whole} | whole


def check_not_reserved(event_type: str, source_agent: str) -> None:
    """403 for an event a client may not publish: the service's families or its source."""
    family = event_type.split(".", 1)[0]
    if family in RESERVED_FAMILIES:
        raise Forbidden(
            f"Event family '{family}.*' is reserved for the service "
            f"({', '.join(f + '.*' for f in RESERVED_FAMILIES)})"
        )
    if unicodedata.normalize("NFKC", source_agent).strip().casefold() == SERVICE_SOURCE:
        raise Forbidden(f"source_agent '{SERVICE_SOURCE}' is reserved for the service")


class EventBus:
    """Publish and replay events; one script call each."""

    def __init__(self, scripts: Scripts):
        self.scripts = scripts

    def publish(self, request: dict, published_by: str) -> dict:
        """Store and fan out a validated publish request; returns the event with `event_id`.

        `published_by` is the authenticated principal, stored with the event: replays
        show who really sent it, whatever the request's `source_agent` says.
        """
        event_type, source_agent = request["event_type"], request["source_agent"]
        check_not_reserved(event_type, source_agent)
        envelope = {
            "event_type": event_type,
            "source_agent": source_agent,
            "published_by": published_by,
            "task_id": request.get("task_id"),
            "trace_id": request.get("trace_id") or uuid.uuid4().hex,
            "priority": normalize_priority(request.get("priority")),
            "payload": request["payload"],
            "metadata": request.get("metadata") or {},
        }
        # The type, source and task go in the entry's own fields, and the script takes
        # the timestamp from Redis' clock, the same one that makes the stream id, so
        # timestamps follow stream order whatever the workers' clocks say.
        stored = {name: envelope[name] for name in STORED_BY_CLIENT}
        data = json.dumps(stored, separators=(",", ":"), allow_nan=False)
        reply = self.scripts.publish_event(
            event_type=event_type,
            source_agent=source_agent,
            task_id=envelope["task_id"] or None,
            data=data,
        )
        return {"event_id": reply["event_id"], **envelope, "timestamp": reply["timestamp"]}

    def read(
        self,
        *,
        order: str = "desc",
        after: str | None = None,
        before: str | None = None,
        limit: int = 100,
        event_type: str | None = None,
        task_id: str | None = None,
        source_agent: str | None = None,
    ):
        """One page of stored events (ids exclusive bounds) and the cursor for the next one.

        Ascending pages always return a cursor, the position to resume from, so a tailing
        client can keep polling; descending ones return None at the end.
        """
        low, high = _canonical(after), _canonical(before)
        if _empty_range(low, high):
            # Nothing lies after the largest id or before 0-0; Redis would refuse the range.
            return [], (low or FIRST_POSITION) if order == "asc" else None
        start, stop = (low, high) if order == "asc" else (high, low)
        reply = self.scripts.read_events(
            order=order,
            start=start,
            stop=stop,
            limit=limit,
            event_type=event_type or None,
            task_id=task_id or None,
            source_agent=source_agent or None,
            scan_budget=READ_SCAN_BUDGET,
        )
        events = [envelope_of(event["event_id"], event) for event in rows(reply["events"])]
        return events, reply.get("cursor")


def _canonical(event_id: str | None) -> str | None:
    """`007-01` -> `7-1`, so cursors handed back look like the ids Redis issues."""
    if not event_id:
        return None
    parsed = parse_event_id(event_id)
    if parsed is None:  # the schemas let none through; never guess a position
        raise ValueError(f"not an event id: {event_id!r}")
    return f"{parsed[0]}-{parsed[1]}"


def _empty_range(low: str | None, high: str | None) -> bool:
    return low == f"{MAX_ID_PART}-{MAX_ID_PART}" or high == FIRST_POSITION
