"""Decision links: a confirmation page (GET decides nothing) and its button (POST)."""

from __future__ import annotations

import contextlib

from flask import Blueprint, render_template, request

from app import metrics
from app.decision_links import DecisionLinks, Link
from app.errors import ApiError, NotFound
from app.services import current_settings, services

blp = Blueprint("decisions", __name__, url_prefix="/decisions")
# No script at all; the token in the URL must not leak through Referer or caches.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
_VERB = {"approve": "approved", "reject": "rejected"}


def _page(status: int, title: str, message: str, **context):
    html = render_template("decision.html", title=title, message=message, **context)
    return html, status, PAGE_HEADERS


def _link(token: str) -> Link | None:
    return DecisionLinks(current_settings()).read(token)


def _closed(approval: dict):
    """The page for a link whose approval can no longer be decided."""
    if approval["status"] == "timeout":
        return _page(410, "Link expired", "This approval timed out; nothing was decided.")
    return _page(
        409,
        "Already decided",
        f"This approval was already {approval['status']}; nothing changed.",
        approval=approval,
    )


@blp.route("/<token>", methods=["GET"])
def confirm(token):
    """Show what the link would decide, with a button; never changes anything."""
    link = _link(token)
    if link is None:
        return _page(400, "Invalid link", "This link is not valid (altered or incomplete).")
    try:
        approval = services().approvals.get(link.approval_id)
    except NotFound:
        return _page(404, "Approval not found", "This approval no longer exists.")
    if approval["status"] != "pending":
        return _closed(approval)
    if services().approvals.link_used(link.digest):
        return _page(409, "Link already used", "This link was used already.", approval=approval)
    verb = "Approve" if link.decision == "approve" else "Reject"
    # What is approved is the payload this page shows: the button sends its hash, and an
    # edit made before it is pressed refuses the decision (the link stays usable).
    task = services().tasks.get(approval["task_id"])
    return _page(
        200,
        f"{verb} this task?",
        f"You are deciding as {link.principal}.",
        approval=approval,
        payload=task["payload"],
        confirm=True,
        decision=link.decision,
        principal=link.principal,
    )


@blp.route("/<token>", methods=["POST"])
def decide(token):
    """Decide as the link's principal, with every rule of the approval gate."""
    link = _link(token)
    if link is None:
        return _page(400, "Invalid link", "This link is not valid; nothing was decided.")
    gate = services().approvals
    if not gate.spend_link(link.digest):
        return _page(409, "Link already used", "This link was used already; nothing changed.")
    form = request.form
    try:
        approval, task = gate.decide(
            link.approval_id,
            link.principal,
            # The admin who named this principal on the subscription vouches for it as an
            # approver; a policy rule's eligibility still applies in decide().
            current_settings().approver_role,
            approve=link.decision == "approve",
            reason=form.get("reason", "")[:1000] or None,
            comment=form.get("comment", "")[:1000] or None,
            expected_sha256=form.get("payload_sha256") or None,
        )
    except ApiError as error:
        gate.release_link(link.digest)  # refused: nothing was decided with it
        return _page(error.status, "Not decided", f"{error.detail}. Nothing changed.")
    except Exception:
        # Redis failed on the way (or after it decided: the gate refuses this principal
        # a second decision anyway): the link stays usable. Its own failure must not
        # hide the first one, which becomes the usual 503.
        with contextlib.suppress(Exception):
            gate.release_link(link.digest)
        raise
    metrics.approval_decided(_VERB[link.decision])
    if task:
        metrics.task_moved(task["status"])
    return _page(
        200,
        f"Task {_VERB[link.decision]}",
        f"Decided as {link.principal}; the task is now {task['status'] if task else 'gone'}.",
        approval=approval,
    )
