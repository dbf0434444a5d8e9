"""The webhooks page (admin): each subscription with its newest deliveries, and retry."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for

from app.errors import NotFound
from app.services import services
from app.ui import bp
from app.ui.session import csrf_token, page

DELIVERIES_SHOWN = 20


def may_retry(delivery: dict) -> bool:
    """Whether a delivery is worth a Retry button: dead, or pending after a failed attempt."""
    failed_once = delivery["status"] == "pending" and bool(delivery.get("last_error"))
    return delivery["status"] == "dead" or failed_once


def _subscriptions() -> list[dict]:
    store = services().webhooks
    shown = []
    for webhook in store.list():
        try:
            deliveries = store.deliveries(webhook["webhook_id"], DELIVERIES_SHOWN)
        except NotFound:  # deleted between the two reads
            continue
        rows = [{**d, "retryable": may_retry(d)} for d in deliveries]
        shown.append({"webhook": webhook, "deliveries": rows})
    return shown


@bp.route("/webhooks", methods=["GET"])
@page(role="admin")
def webhooks():
    """Every subscription, oldest first, each with its newest deliveries (never a secret)."""
    return render_template(
        "ui/webhooks.html",
        subscriptions=_subscriptions(),
        shown=DELIVERIES_SHOWN,
        csrf=csrf_token(),
        notice=request.args.get("notice"),
    )


@bp.route("/webhooks/<webhook_id>/deliveries/<delivery_id>/retry", methods=["POST"])
@page(role="admin")
def retry_delivery(webhook_id, delivery_id):
    """Send a delivery again, due now with the same webhook-id (as the API's admin role)."""
    services().webhooks.retry(webhook_id, delivery_id)
    target = url_for("ui.webhooks", notice="delivery_retried", _anchor=f"webhook-{webhook_id}")
    return redirect(target, code=303)
