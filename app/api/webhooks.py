"""Webhooks: subscriptions (admin), their delivery log, test sends and retries."""

from __future__ import annotations

from app.auth import current_principal, require_role
from app.parsing import Blueprint
from app.schemas.common import ErrorSchema
from app.schemas.webhooks import (
    DeliveryListSchema,
    DeliveryQuerySchema,
    DeliverySchema,
    WebhookCreatedSchema,
    WebhookCreateSchema,
    WebhookListSchema,
    WebhookSchema,
)
from app.services import services

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/webhooks",
    description="Signed event deliveries to your URLs; a deliverer process sends them",
)


def _admin_route(rule: str, method: str):
    """Route a view for admins only: every webhook operation is an admin's."""

    def decorate(view):
        admin_only = require_role("admin", forbidden="Requires role admin")
        return blp.route(rule, methods=[method])(admin_only(view))

    return decorate


@_admin_route("", "POST")
@blp.arguments(WebhookCreateSchema())
@blp.response(201, WebhookCreatedSchema)
@blp.alt_response(409, schema=ErrorSchema, description="Too many webhooks")
def create(body):
    """Subscribe a URL to events; the answer holds its signing secret, shown only once."""
    webhook, secret = services().webhooks.create(body, current_principal().id)
    return {**webhook, "secret": secret}


@_admin_route("", "GET")
@blp.response(200, WebhookListSchema)
def list_webhooks():
    """Every subscription, oldest first."""
    webhooks = services().webhooks.list()
    return {"count": len(webhooks), "webhooks": webhooks}


@_admin_route("/<webhook_id>", "GET")
@blp.response(200, WebhookSchema)
def get_webhook(webhook_id):
    """One subscription."""
    return services().webhooks.get(webhook_id)


@_admin_route("/<webhook_id>", "DELETE")
@blp.response(204)
def delete_webhook(webhook_id):
    """Unsubscribe: pending deliveries are dropped."""
    services().webhooks.delete(webhook_id)


@_admin_route("/<webhook_id>/test", "POST")
@blp.response(202, DeliverySchema)
def send_test(webhook_id):
    """Queue a `webhook.test` delivery to this subscription only."""
    return services().webhooks.send_test(webhook_id)


@_admin_route("/<webhook_id>/deliveries", "GET")
@blp.arguments(DeliveryQuerySchema(), location="query")
@blp.response(200, DeliveryListSchema)
def deliveries(query, webhook_id):
    """The subscription's deliveries, newest first."""
    found = services().webhooks.deliveries(webhook_id, query["limit"])
    return {"count": len(found), "deliveries": found}


@_admin_route("/<webhook_id>/deliveries/<delivery_id>/retry", "POST")
@blp.response(202, DeliverySchema)
@blp.alt_response(409, schema=ErrorSchema, description="The delivery was delivered")
def retry(webhook_id, delivery_id):
    """Send a pending or dead delivery again (same webhook-id), with a fresh max age."""
    return services().webhooks.retry(webhook_id, delivery_id)
