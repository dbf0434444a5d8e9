"""What a validated create request stores: the task's fields and SLA, and page cursors.

Pure functions (no Redis): the task store hands their results to its scripts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime

from app.config import Settings
from app.domain import routing
from app.domain.model import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_SOURCE,
    SLA_TARGETS,
    UNSTORED_DEFAULTS,
)
from app.domain.records import sla_target_text, stamp
from app.errors import ValidationFailed


def stored_fields(
    request: dict, task_id: str, principal: str, settings: Settings
) -> tuple[dict[str, str], int | None]:
    """The new task's hash fields, and the SLA target (ms) when the script must set the
    deadline from the creation time (None when the request gave a deadline, or gave no
    SLA at all: the priority's default is not stored, and task_record restores it)."""
    sla = dict(request.get("sla") or {})
    if request.get("sla_deadline"):
        sla["deadline"] = request["sla_deadline"]
    fields = {
        "task_id": task_id,
        "type": request["type"],
        "priority": request["priority"],
        "source": request.get("source") or DEFAULT_SOURCE,
        "payload": json.dumps(request.get("payload") or {}),
        "metadata": json.dumps(request.get("metadata") or {}),
        "trace_id": request.get("trace_id") or task_id,
        "assigned_to": routing.route(request["type"], settings),
        "created_by": principal,
        "max_retries": str(request.get("max_retries", DEFAULT_MAX_RETRIES)),
    }
    if request.get("parent_task_id"):
        fields["parent_task_id"] = request["parent_task_id"]
    target_ms = None
    if sla:  # none given: the priority's default, not stored
        target = SLA_TARGETS[request["priority"]]
        sla.setdefault("target", sla_target_text(target))
        if sla.get("deadline"):
            sla["deadline"] = stamp(sla["deadline"])
        else:
            target_ms = int(target.total_seconds() * 1000)
        fields["sla"] = json.dumps(sla)
    stored = {
        name: value
        for name, value in fields.items()
        if UNSTORED_DEFAULTS.get(name) != value and not (name == "trace_id" and value == task_id)
    }
    return stored, target_ms


def _canonical(value) -> str:
    """A value JSON has no type for, as text: a time as its UTC instant, so the same
    instant written with another offset is the same request (str() of a UTC time, as
    fingerprints have always held it)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC)
    return str(value)


def fingerprint(request: dict) -> str:
    """The request's identity for Idempotency-Key: SHA-256 of its canonical JSON."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_cursor(seq: str | None) -> str | None:
    """An opaque page cursor; None at the end of the listing."""
    return base64.urlsafe_b64encode(f"t:{seq}".encode()).decode().rstrip("=") if seq else None


def decode_cursor(cursor: str) -> str:
    """The sequence a cursor stands for; 422 when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    kind, _, seq = text.partition(":")
    # isascii: str.isdigit() also takes other scripts' digits, which Redis cannot read.
    if kind != "t" or not (seq.isascii() and seq.isdigit()) or len(seq) > 19:
        raise ValidationFailed("Invalid cursor", errors={"cursor": ["Malformed cursor."]})
    return seq
