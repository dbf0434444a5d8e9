"""Event requests and responses."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate

from app.domain.events import (
    EVENT_TYPE,
    PRIORITIES,
    PRIORITY_ALIASES,
    WELL_KNOWN_TYPES,
    parse_event_id,
)
from app.schemas.common import (
    TASK_ID_EXAMPLE,
    TASK_ID_FIELD,
    TIME_EXAMPLE,
    FullMatch,
    JsonObject,
    Schema,
    StrictSchema,
    Timestamp,
    describe,
)
from app.schemas.envelopes import EnvelopeSchema, ListEnvelopeSchema

_EVENT_TYPE = [
    validate.Length(max=100),
    FullMatch(EVENT_TYPE, error="Must be a dotted lowercase name like task.started."),
]


# For the spec: ids as the service issues them. 19 digits always fit in Redis' 64-bit
# parts; _event_id also takes 20 when the value fits.
_EVENT_ID_PATTERN = r"^[0-9]{1,19}-[0-9]{1,19}$"


def _event_id(value: str) -> None:
    """A stream id Redis accepts: two unsigned 64-bit numbers joined by '-'."""
    if parse_event_id(value) is None:
        raise ValidationError("Must be an event id like 1700000000000-0.")


class EventPublishSchema(StrictSchema):
    """An event an agent publishes."""

    event_type = fields.String(
        required=True,
        validate=_EVENT_TYPE,
        metadata={
            "description": "Dotted lowercase name. Emitted by the service: "
            + ", ".join(WELL_KNOWN_TYPES),
            "example": "deploy.succeeded",
        },
    )
    source_agent = fields.String(required=True, validate=validate.Length(min=1, max=64))
    payload = JsonObject(required=True)
    task_id = fields.String(validate=TASK_ID_FIELD)
    trace_id = fields.String(validate=validate.Length(min=1, max=128))
    priority = fields.String(validate=validate.OneOf((*PRIORITIES, *PRIORITY_ALIASES)))
    metadata = JsonObject(load_default=dict)


class EventPublishedSchema(EnvelopeSchema):
    """Where the published event was stored."""

    event_id = fields.String(required=True)
    event_type = fields.String(required=True)
    message = fields.String(required=True)


class EventSchema(Schema):
    """A stored event envelope (CloudEvents: id=event_id, type=event_type, time=timestamp)."""

    event_id = fields.String(required=True)
    event_type = fields.String(required=True)
    source_agent = fields.String(required=True)
    published_by = fields.String(
        allow_none=True,
        metadata={"description": "The principal that published it (orchestrator: the service)"},
    )
    task_id = fields.String(allow_none=True)
    trace_id = fields.String(allow_none=True)
    priority = fields.String(required=True)
    payload = JsonObject(required=True)
    metadata = JsonObject()
    timestamp = Timestamp(required=True)


class EventQuerySchema(StrictSchema):
    """Filters, cursors and page size of a replay."""

    type = fields.String(validate=_EVENT_TYPE)
    task_id = fields.String(validate=TASK_ID_FIELD)
    source_agent = fields.String(validate=validate.Length(min=1, max=64))
    after = fields.String(
        validate=_event_id,
        metadata={
            "description": "Exclusive lower bound (an event id): resume after it.",
            "pattern": _EVENT_ID_PATTERN,
        },
    )
    before = fields.String(
        validate=_event_id,
        metadata={
            "description": "Exclusive upper bound (an event id).",
            "pattern": _EVENT_ID_PATTERN,
        },
    )
    order = fields.String(
        validate=validate.OneOf(("asc", "desc")),
        metadata={"description": "asc when `after` is given, else desc"},
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    format = fields.String(
        load_default="native", validate=validate.OneOf(("native", "cloudevents"))
    )


class EventListSchema(ListEnvelopeSchema):
    """One page of events and the cursor of the next."""

    events = fields.List(
        fields.Dict(),
        required=True,
        metadata={"description": "Event envelopes, or CloudEvents 1.0"},
    )
    next = fields.String(
        allow_none=True,
        required=True,
        metadata={
            "description": "asc: always the position to resume from (pass as `after`); "
            "desc: pass as `before`, null at the end."
        },
    )


EVENT_ID_EXAMPLE = "1767608100000-0"
# The request example the docs send as-is: it must publish.
PUBLISH_EXAMPLE = {
    "event_type": "deploy.succeeded",
    "source_agent": "ops_agent",
    "priority": "medium",
    "payload": {"service": "web", "version": "1.4.2"},
}

describe(
    EventPublishSchema,
    event_type=(None, "deploy.succeeded"),
    source_agent=("Who publishes it", "ops_agent"),
    payload=("The event's data, any JSON object", {"service": "web", "version": "1.4.2"}),
    task_id="The task it concerns, if any (a task id)",
    trace_id="Correlation id (default: the request's X-Request-ID)",
    priority=("critical, high, medium (default) or low; P0-P3 map to them in order", "medium"),
    metadata=("Extra JSON", {}),
)
describe(
    EventPublishedSchema,
    event_id=("Its stream id: unique, increasing, usable as a cursor", EVENT_ID_EXAMPLE),
    event_type=("As published", "deploy.succeeded"),
    message=("What happened", "Event published"),
)
describe(
    EventSchema,
    event_id=("Stream id", EVENT_ID_EXAMPLE),
    event_type=("Dotted lowercase name", "task.created"),
    source_agent=("Who published it (`orchestrator` for the service's own)", "orchestrator"),
    task_id=("The task it concerns, or null", None),
    trace_id=("Correlation id", "req-7f3a9c"),
    priority=("critical, high, medium or low", "medium"),
    payload=("The event's data", {"task_id": TASK_ID_EXAMPLE}),
    metadata=("Extra JSON", {}),
    timestamp=("When it was stored (Redis clock, UTC)", TIME_EXAMPLE),
)
describe(
    EventQuerySchema,
    type="Only events of this type",
    task_id="Only events of this task",
    source_agent="Only events from this publisher",
    limit="Page size (1-1000)",
)
