"""The approvals inbox, its history, and approve / reject forms that work without JavaScript."""

from __future__ import annotations

import json

from flask import g, redirect, render_template, request, url_for
from marshmallow import ValidationError

from app import metrics
from app.auth import Principal
from app.domain import approval_policy
from app.errors import Forbidden, NotFound, ValidationFailed
from app.schemas.approvals import ApproveSchema, RejectSchema
from app.services import current_settings, services
from app.ui import bp
from app.ui.session import csrf_token, page

INBOX_LIMIT = 100
HISTORY_LIMIT = 50


def may_decide(principal: Principal) -> bool:
    """Whether the role may approve or reject at all (the API's approver role)."""
    return principal.at_least(current_settings().approver_role)


def card(approval: dict, task: dict, principal: Principal) -> dict:
    """What the inbox shows for one pending approval, and which buttons it offers."""
    mine = approval.get("requested_by") == principal.id
    already = any(entry.get("by") == principal.id for entry in approval.get("approvals") or [])
    decider = may_decide(principal)
    return {
        "approval": approval,
        "task": task,
        "mine": mine,
        "already": already,
        # The domain enforces all of this again (four eyes, eligibility); these only
        # decide which buttons are worth showing.
        "can_approve": decider and not mine and not already,
        "can_reject": decider,
        "approved": len(approval.get("approvals") or []),
        "required": approval.get("required_approvals", 1),
    }


def _cards(principal: Principal) -> list[dict]:
    cards = []
    for approval in services().approvals.pending()[:INBOX_LIMIT]:
        try:
            task = services().tasks.get(approval["task_id"])
        except NotFound:  # decided and purged between the two reads
            continue
        cards.append(card(approval, task, principal))
    # What I can decide first; oldest first within each group (sorted() is stable).
    return sorted(cards, key=lambda c: not c["can_approve"])


@bp.route("/", methods=["GET"])
@page()
def inbox():
    """Pending approvals, the ones this principal can decide first."""
    cards = _cards(g.ui_principal)
    return render_template(
        "ui/inbox.html", cards=cards, csrf=csrf_token(), notice=request.args.get("notice")
    )


@bp.route("/approvals/history", methods=["GET"])
@page()
def history():
    """Decided and timed-out approvals, newest first."""
    decided = services().approvals.history(HISTORY_LIMIT)
    return render_template("ui/history.html", approvals=decided)


def _form(schema, fields: tuple[str, ...]) -> dict:
    """The form's text fields, validated by the API's own schema (lengths and all)."""
    data = {name: request.form[name].strip() for name in fields if request.form.get(name, "")}
    try:
        return schema.load({k: v for k, v in data.items() if v})
    except ValidationError as error:
        raise ValidationFailed("Invalid form: " + json.dumps(error.messages)) from None


def _edited_payload(task_id: str, shown_sha256: str | None) -> dict | None:
    """The payload from the edits textarea when it differs from the one the form showed
    (its hash), else None; a form without that hash compares with the task's payload."""
    text = request.form.get("payload", "").strip()
    if not text:
        return None
    try:
        edited = json.loads(text)
    except ValueError:
        raise ValidationFailed("The edited payload is not valid JSON.") from None
    if not isinstance(edited, dict):
        raise ValidationFailed("The edited payload must be a JSON object.")
    if shown_sha256:
        return None if approval_policy.canonical_sha256(edited) == shown_sha256 else edited
    return None if edited == services().tasks.get(task_id)["payload"] else edited


def _decide(approval_id: str, approve: bool):
    principal = g.ui_principal
    if not may_decide(principal):
        raise Forbidden(f"Requires role {current_settings().approver_role} or higher.")
    gate = services().approvals
    if approve:
        fields = _form(ApproveSchema(), ("comment",))
        # The payload the page showed: approving pins it, so an edit someone made since
        # is refused (409) rather than silently undone by this form's older copy.
        shown = request.form.get("payload_sha256") or None
        edited = _edited_payload(gate.get(approval_id)["task_id"], shown)
        if edited is not None:
            fields["payload"] = edited
        fields["expected_sha256"] = shown
    else:
        fields = _form(RejectSchema(), ("reason", "comment"))
    approval, task = gate.decide(
        approval_id, principal.id, principal.role, approve=approve, act=principal.act, **fields
    )
    verb = "approved" if approve else "rejected"
    metrics.approval_decided(verb)
    if task:
        metrics.task_moved(task["status"])
        return redirect(url_for("ui.task", task_id=task["task_id"], notice=verb), code=303)
    return redirect(url_for("ui.inbox", notice=verb), code=303)


@bp.route("/approvals/<approval_id>/approve", methods=["POST"])
@page()
def approve(approval_id):
    """Approve with an optional comment (and edits, when the gate takes them)."""
    return _decide(approval_id, approve=True)


@bp.route("/approvals/<approval_id>/reject", methods=["POST"])
@page()
def reject(approval_id):
    """Reject with a reason; the task's creator may reject to withdraw it."""
    return _decide(approval_id, approve=False)
