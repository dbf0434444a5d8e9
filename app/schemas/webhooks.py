"""Webhook subscriptions and deliveries."""

from __future__ import annotations

from marshmallow import fields, validate

from app.schemas.common import COUNT, FullMatch, Schema, StrictSchema, Timestamp, describe

# An event type (task.failed), a family (task.*) or every event (*).
EVENT_FILTER = FullMatch(r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$")
# http(s), a host without credentials, then anything without spaces.
WEBHOOK_URL = r"^https?://[A-Za-z0-9._~\[\]:-]+([/?#][^\s]*)?$"
FORMATS = ("standard", "slack")
DELIVERY_STATUSES = ("pending", "delivered", "dead")


class WebhookCreateSchema(StrictSchema):
    """POST /webhooks: where to send which events, and who gets decision links."""

    url = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=2000), FullMatch(WEBHOOK_URL)],
        metadata={"description": "http(s); private addresses are refused unless allowed"},
    )
    events = fields.List(
        fields.String(validate=[validate.Length(max=200), EVENT_FILTER]),
        required=True,
        validate=validate.Length(min=1, max=50),
        metadata={"example": ["approval.requested", "task.*"]},
    )
    description = fields.String(validate=validate.Length(max=500))
    format = fields.String(load_default="standard", validate=validate.OneOf(FORMATS))
    approvers = fields.List(
        fields.String(validate=validate.Length(min=1, max=200)),
        validate=validate.Length(max=20),
        metadata={"description": "principals that get decision links in approval.requested"},
    )


class WebhookSchema(Schema):
    """A subscription (its secret is never shown again)."""

    webhook_id = fields.String(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    description = fields.String(allow_none=True)
    format = fields.String(required=True, validate=validate.OneOf(FORMATS))
    approvers = fields.List(fields.String())
    created_at = Timestamp(allow_none=True)
    created_by = fields.String(allow_none=True)


class WebhookCreatedSchema(WebhookSchema):
    """201: the subscription and its signing secret, shown only in this answer."""

    secret = fields.String(
        required=True, metadata={"example": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
    )


class WebhookListSchema(Schema):
    """Every subscription."""

    count = fields.Integer(required=True)
    webhooks = fields.List(fields.Nested(WebhookSchema), required=True)


class DeliverySchema(Schema):
    """One event's delivery to one subscription."""

    delivery_id = fields.String(required=True)
    webhook_id = fields.String(required=True)
    event_id = fields.String(required=True)
    event_type = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(DELIVERY_STATUSES))
    attempts = fields.Integer(required=True, validate=validate.Range(min=0))
    last_status_code = fields.Integer(allow_none=True, validate=validate.Range(100, 599))
    last_error = fields.String(allow_none=True)
    next_attempt_at = Timestamp(allow_none=True)
    created_at = Timestamp(allow_none=True)
    last_attempt_at = Timestamp(allow_none=True)


class DeliveryListSchema(Schema):
    """A subscription's deliveries, newest first."""

    count = fields.Integer(required=True)
    deliveries = fields.List(fields.Nested(DeliverySchema), required=True)


class DeliveryQuerySchema(StrictSchema):
    """?limit= for the delivery list."""

    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


_WEBHOOK_FIELDS = {
    "webhook_id": ("The subscription's id", "wh_3f2b8c1e7d4a4e8b"),
    "url": "Where events are POSTed (http or https, a public address)",
    "events": "Event types, families (task.*) or * that this subscription receives",
    "description": "What it is for, for people",
    "format": "standard (signed Standard Webhooks) or slack (an incoming-webhook message)",
    "approvers": "Principals who get decision links in approval.requested",
    "created_at": "When it was created (ISO 8601 UTC)",
    "created_by": "The admin who created it",
}
describe(
    WebhookCreateSchema,
    events=_WEBHOOK_FIELDS["events"],
    description=_WEBHOOK_FIELDS["description"],
    format=_WEBHOOK_FIELDS["format"],
)
describe(WebhookSchema, **_WEBHOOK_FIELDS)
describe(
    WebhookCreatedSchema,
    **_WEBHOOK_FIELDS,
    secret="The signing secret (whsec_...): shown only in this answer",  # noqa: S106
)
describe(WebhookListSchema, count=COUNT, webhooks="Every subscription, oldest first")
describe(
    DeliverySchema,
    delivery_id="The delivery's id (the same webhook-id on every retry)",
    webhook_id="The subscription it goes to",
    event_id="The event's stream id",
    event_type="The event's type",
    status="pending, delivered or dead",
    attempts="Attempts made so far",
    last_status_code="The receiver's last HTTP status, if it answered",
    last_error="Why the last attempt failed, if it did",
    next_attempt_at="When the next attempt is due (pending only)",
    created_at="When the event was matched to the subscription",
    last_attempt_at="When the last attempt was made",
)
describe(DeliveryListSchema, count=COUNT, deliveries="Newest first")
describe(DeliveryQuerySchema, limit="How many deliveries, newest first (1-1000)")
