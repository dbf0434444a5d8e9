"""Events: publish to the bus and replay what it stored."""

from __future__ import annotations

from flask import g

from app.auth import current_principal, require_role
from app.domain.events import to_cloudevent
from app.dumping import respond
from app.parsing import Blueprint
from app.schemas.events import (
    PUBLISH_EXAMPLE,
    EventListSchema,
    EventPublishedSchema,
    EventPublishSchema,
    EventQuerySchema,
)
from app.services import services

blp = Blueprint(
    "events",
    __name__,
    url_prefix="/events",
    description=(
        "Durable, replayable events. Each is stored in a Redis Stream and published on "
        "`{<prefix>}:events:<event_type>` and `{<prefix>}:events:*` (SUBSCRIBE to that literal "
        "channel for everything; PSUBSCRIBE `{<prefix>}:events:*` would get each event twice). "
        "CloudEvents 1.0 mapping (`GET /events?format=cloudevents`): specversion = 1.0, "
        "id = event_id, type = event_type, source = /agents/<source_agent, percent-encoded>, "
        "time = timestamp, data = payload, datacontenttype = application/json; extensions "
        "taskid, traceid, priority when set."
    ),
)


@blp.route("/publish", methods=["POST"])
@require_role("agent", forbidden="Role too weak, or a reserved event family or source")
@blp.arguments(EventPublishSchema(), example=PUBLISH_EXAMPLE)
@blp.response(201, EventPublishedSchema)
def publish(body):
    """Publish an event: stored for replay and fanned out to live subscribers."""
    # The request id is the caller's well-formed X-Request-ID or a fresh one: either way
    # the event, the response header and the logs share it.
    trace_id = body.get("trace_id") or g.request_id
    event = services().events.publish({**body, "trace_id": trace_id}, current_principal().id)
    body = {
        "success": True,
        "event_id": event["event_id"],
        "event_type": event["event_type"],
        "message": "Event published",
    }
    return respond(EventPublishedSchema, body), 201


@blp.route("", methods=["GET"])
@require_role("user")
@blp.arguments(EventQuerySchema(), location="query")
@blp.response(200, EventListSchema)
def list_events(query):
    """Replay stored events; page with `next` as `after` (asc) or `before` (desc)."""
    order = query.get("order") or ("asc" if query.get("after") else "desc")
    events, next_cursor = services().events.read(
        order=order,
        after=query.get("after"),
        before=query.get("before"),
        limit=query["limit"],
        event_type=query.get("type"),
        task_id=query.get("task_id"),
        source_agent=query.get("source_agent"),
    )
    if query["format"] == "cloudevents":
        events = [to_cloudevent(event) for event in events]
    return {"success": True, "count": len(events), "events": events, "next": next_cursor}
