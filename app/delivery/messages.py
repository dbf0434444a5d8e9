"""What one delivery sends: a Standard Webhooks request or a Slack message."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from app.decision_links import DecisionLinks
from app.domain.delivery import Attempt

USER_AGENT = "orchestrator-webhooks/1"


def _envelope(attempt: Attempt, links: DecisionLinks) -> dict:
    """The event envelope, with decision links for the subscription's approvers."""
    envelope = json.loads(attempt.delivery["data"])
    approvers = json.loads(attempt.webhook.get("approvers") or "[]")
    payload = envelope.get("payload") or {}
    if envelope.get("event_type") == "approval.requested" and approvers and links.base:
        envelope["links"] = links.links(payload.get("approval_id", ""), approvers)
    return envelope


def standard_request(attempt: Attempt, links: DecisionLinks, now_seconds: int):
    """(body, headers) signed per Standard Webhooks: v1 HMAC-SHA256 of id.timestamp.body."""
    envelope = _envelope(attempt, links)
    body = json.dumps(
        {"type": envelope["event_type"], "timestamp": envelope["timestamp"], "data": envelope},
        separators=(",", ":"),
    )
    msg_id = attempt.delivery["delivery_id"]
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(now_seconds),
    }
    if attempt.secret:
        # The library takes the timestamp as a datetime and signs its whole seconds.
        stamp = datetime.fromtimestamp(now_seconds, UTC)
        headers["webhook-signature"] = Webhook(attempt.secret).sign(msg_id, stamp, body)
    return body.encode(), headers


def _escape(text) -> str:
    """Slack mrkdwn treats & < > as markup."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fields(pairs: list[tuple[str, object]]) -> dict:
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": f"*{name}*\n{_escape(value)}"}
            for name, value in pairs
            if value not in (None, "")
        ],
    }


def _buttons(entries: list[dict]) -> list[dict]:
    elements = []
    for entry in entries[:12]:  # Slack allows 25 elements per actions block
        who = entry["principal"][:40]
        elements.append(_button(f"Approve as {who}", entry["approve"], "primary"))
        elements.append(_button(f"Reject as {who}", entry["reject"], "danger"))
    return [{"type": "actions", "elements": elements}] if elements else []


def _button(text: str, url: str, style: str) -> dict:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "url": url,
        "style": style,
    }


def slack_message(envelope: dict) -> dict:
    """A Slack incoming-webhook message (text and blocks) for one event."""
    kind, payload = envelope["event_type"], envelope.get("payload") or {}
    task = envelope.get("task_id") or payload.get("task_id")
    if kind == "approval.requested":
        text = f"Approval needed for task {task}: {payload.get('reason')}"
        details = [
            ("Task", f"{task} ({envelope.get('priority')})"),
            ("Reason", payload.get("reason")),
            ("Requested by", payload.get("requested_by")),
            ("Expires", payload.get("expires_at")),
        ]
        extra = _buttons(envelope.get("links") or [])
    elif kind == "task.failed":
        text = f"Task {task} failed: {payload.get('error') or 'no error given'}"
        details = [
            ("Task", task),
            ("Agent", payload.get("assigned_to")),
            ("Error", payload.get("error")),
            ("Retries", payload.get("retry_count")),
        ]
        extra = []
    else:
        text = f"{kind}" + (f" for task {task}" if task else "")
        details, extra = [("Event", kind), ("Task", task)], []
    header = {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_escape(text)}*"}}
    return {"text": text, "blocks": [header, _fields(details), *extra]}


def slack_request(attempt: Attempt, links: DecisionLinks):
    """(body, headers) of a Slack incoming-webhook post (Slack checks no signature)."""
    body = json.dumps(slack_message(_envelope(attempt, links)), separators=(",", ":"))
    return body.encode(), {"Content-Type": "application/json", "User-Agent": USER_AGENT}


def build_request(attempt: Attempt, links: DecisionLinks, now_seconds: int):
    """(body, headers) for this attempt in its subscription's format."""
    if attempt.webhook.get("format") == "slack":
        return slack_request(attempt, links)
    return standard_request(attempt, links, now_seconds)
