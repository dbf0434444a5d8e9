"""Webhook subscriptions and their deliveries, as the API sees them."""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid

from app.config import Settings
from app.domain.destinations import url_problem
from app.domain.scripts import Scripts, rows
from app.domain.sealing import SecretBox
from app.errors import Conflict, NotFound, ValidationFailed

WEBHOOK_ID = re.compile(r"^wh_[0-9a-f]{32}$")
DELIVERY_ID = re.compile(r"^dlv_[0-9a-f]{24}$")
MAX_WEBHOOKS = 100
WEBHOOK_FIELDS = ("webhook_id", "url", "events", "description", "format", "approvers")
DELIVERY_FIELDS = (
    "delivery_id",
    "webhook_id",
    "event_id",
    "event_type",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "created_at",
    "last_attempt_at",
)


def new_secret() -> str:
    """A Standard Webhooks secret: whsec_ + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_record(stored: dict) -> dict:
    """A stored subscription as clients see it: never its secret."""
    record = {name: stored.get(name) for name in WEBHOOK_FIELDS}
    record["events"] = json.loads(stored["events"])
    record["approvers"] = json.loads(stored.get("approvers") or "[]")
    record.update(created_at=stored.get("created_at"), created_by=stored.get("created_by"))
    return record


def delivery_record(stored: dict) -> dict:
    """A stored delivery as clients see it (without the event it carries)."""
    record = {name: stored.get(name) for name in DELIVERY_FIELDS}
    record["attempts"] = int(stored.get("attempts") or 0)
    code = stored.get("last_status_code")
    record["last_status_code"] = int(code) if code else None
    return record


def _check(pattern: re.Pattern, value: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise NotFound(f"{what} not found")
    return value


def _outcome(reply: dict, what: str) -> dict:
    if reply["outcome"] == "not_found":
        raise NotFound(f"{what} not found")
    return reply


class WebhookStore:
    """Subscriptions (secrets sealed) and their delivery log; one script call each."""

    def __init__(self, scripts: Scripts, settings: Settings):
        self.scripts = scripts
        self.settings = settings
        self.box = SecretBox(settings)

    def create(self, body: dict, created_by: str) -> tuple[dict, str]:
        """Store a subscription; returns it and its secret (the only time it is shown)."""
        problem = url_problem(body["url"], self.settings.webhook_allow_private)
        if problem:
            raise ValidationFailed("Invalid webhook URL", errors={"url": [problem]})
        approvers = body.get("approvers") or []
        if approvers and not self.settings.public_url:
            raise ValidationFailed(
                "Decision links need ORCHESTRATOR_PUBLIC_URL",
                errors={"approvers": ["set ORCHESTRATOR_PUBLIC_URL to name approvers"]},
            )
        secret = new_secret()
        webhook = {
            "webhook_id": f"wh_{uuid.uuid4().hex}",
            "url": body["url"],
            "events": json.dumps(sorted(set(body["events"]))),
            "description": body.get("description") or "",
            "format": body.get("format") or "standard",
            "approvers": json.dumps(list(dict.fromkeys(approvers))),
            "created_by": created_by,
            "secret_sealed": self.box.seal(secret),
        }
        reply = self.scripts.create_webhook(webhook=webhook, max_webhooks=MAX_WEBHOOKS)
        if reply["outcome"] == "conflict":
            raise Conflict(f"At most {MAX_WEBHOOKS} webhooks; delete one first")
        return webhook_record(reply["webhook"]), secret

    def list(self) -> list[dict]:
        """Every subscription, oldest first."""
        reply = self.scripts.get_webhooks(webhook_id=None)
        return [webhook_record(w) for w in rows(reply["webhooks"])]

    def get(self, webhook_id: str) -> dict:
        """One subscription; 404 when unknown."""
        webhook_id = _check(WEBHOOK_ID, webhook_id, "Webhook")
        reply = _outcome(self.scripts.get_webhooks(webhook_id=webhook_id), "Webhook")
        return webhook_record(reply["webhooks"][0])

    def delete(self, webhook_id: str) -> None:
        """Remove a subscription and its deliveries; 404 when unknown."""
        webhook_id = _check(WEBHOOK_ID, webhook_id, "Webhook")
        _outcome(self.scripts.delete_webhook(webhook_id=webhook_id), "Webhook")

    def send_test(self, webhook_id: str) -> dict:
        """Queue a webhook.test delivery to one subscription; returns the delivery."""
        webhook_id = _check(WEBHOOK_ID, webhook_id, "Webhook")
        event_id = f"test-{uuid.uuid4().hex}"
        payload = {"webhook_id": webhook_id, "message": "This is a test delivery."}
        entry = {"event_id": event_id, "event_type": "webhook.test", "payload": payload}
        reply = self.scripts.fan_out(entries=[entry], webhook_id=webhook_id, ack=[])
        (delivery_id,) = _outcome(reply, "Webhook")["created"]
        listed = self.scripts.list_deliveries(
            webhook_id=webhook_id, delivery_id=delivery_id, limit=1
        )
        return delivery_record(_outcome(listed, "Webhook")["deliveries"][0])

    def deliveries(self, webhook_id: str, limit: int = 100) -> list[dict]:
        """A subscription's deliveries, newest first."""
        webhook_id = _check(WEBHOOK_ID, webhook_id, "Webhook")
        reply = self.scripts.list_deliveries(webhook_id=webhook_id, delivery_id=None, limit=limit)
        return [delivery_record(d) for d in rows(_outcome(reply, "Webhook")["deliveries"])]

    def retry(self, webhook_id: str, delivery_id: str) -> dict:
        """Make a delivery pending and due now (same webhook-id); 404 when unknown."""
        webhook_id = _check(WEBHOOK_ID, webhook_id, "Webhook")
        delivery_id = _check(DELIVERY_ID, delivery_id, "Delivery")
        reply = self.scripts.retry_delivery(webhook_id=webhook_id, delivery_id=delivery_id)
        if reply["outcome"] == "conflict":
            raise Conflict(
                "This delivery was delivered; only a pending or dead one is sent again",
                extra={"current_status": reply["status"]},
            )
        return delivery_record(_outcome(reply, "Delivery")["delivery"])
