"""Approval policy rules: who must approve which tasks, how many of them, and until when.

ORCHESTRATOR_APPROVAL_POLICY is a JSON list of rules, first match wins; groups come from
ORCHESTRATOR_GROUP_<NAME>. This module parses and checks them (PolicyError, one line
naming the rule), matches a new task to a rule and builds the gate its approval opens.
It must not import app.config (which imports it): the parser turns PolicyError into
ConfigError.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from types import MappingProxyType

from app.domain.model import PRIORITIES, ROLES, TASK_TYPES

MAX_REQUIRED = 10
_RULE_FIELDS = frozenset({"name", "match", "required", "approvers", "timeout", "on_timeout"})
_MATCH_FIELDS = frozenset({"types", "priorities", "environments"})
_ESCALATION_FIELDS = frozenset({"escalate_to", "extend"})


class PolicyError(ValueError):
    """The policy is malformed; the message names the rule and the problem."""


@dataclass(frozen=True)
class Rule:
    """One policy rule: which tasks it matches and who must approve them."""

    name: str
    required: int
    approvers: tuple[str, ...]
    types: frozenset[str] | None = None
    priorities: frozenset[str] | None = None
    environments: frozenset[str] | None = None
    timeout: int | None = None
    escalate_to: tuple[str, ...] = ()
    extend: int = 0

    def matches(self, request: dict) -> bool:
        """Whether a create request (as validated) falls under this rule."""
        return (
            (self.types is None or request.get("type") in self.types)
            and (self.priorities is None or request.get("priority") in self.priorities)
            and (self.environments is None or environment(request) in self.environments)
        )


@dataclass(frozen=True)
class ApprovalPolicy:
    """The parsed rules and groups; empty (no rules) means the default gate alone."""

    rules: tuple[Rule, ...] = ()
    groups: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    def match(self, request: dict) -> Rule | None:
        """The first rule matching a create request, or None."""
        return next((rule for rule in self.rules if rule.matches(request)), None)

    def groups_of(self, principal: str) -> list[str]:
        """The names of the groups a principal is listed in, sorted."""
        return sorted(name for name, members in self.groups.items() if principal in members)


def environment(request: dict) -> str:
    """payload.environment, trimmed and lowercased; absent or blank counts as production."""
    payload = request.get("payload")
    value = payload.get("environment") if isinstance(payload, dict) else None
    text = str(value).strip().lower() if value is not None else ""
    return text or "production"


def canonical_sha256(payload) -> str:
    """SHA-256 hex of the canonical JSON (sorted keys, no whitespace, UTF-8)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def key_hashes(payload: dict) -> dict[str, str]:
    """One canonical hash per top-level key, so a script can tell which keys an edit changed."""
    return {name: canonical_sha256(value) for name, value in payload.items()}


def gate(request: dict, policy: ApprovalPolicy, approver_role: str, hitl_reason: str | None):
    """The approval a new task opens (fields for create_task), or None when it runs at once.

    A matching rule decides who approves and how many; otherwise the default gate (one
    approval by the approver role) holds whatever the HITL rules flagged.
    """
    rule = policy.match(request)
    if rule is None and hitl_reason is None:
        return None
    payload = request.get("payload") or {}
    opened = {
        "reason": hitl_reason,
        "required": 1,
        "eligible": [f"role:{approver_role}"],
        "payload_sha256": canonical_sha256(payload),
        "payload_keys": key_hashes(payload),
    }
    if rule is not None:
        reasons = [f"policy {rule.name}", *([hitl_reason] if hitl_reason else [])]
        opened |= {
            "reason": "; ".join(reasons),
            "policy": rule.name,
            "required": rule.required,
            "eligible": list(rule.approvers),
        }
        if rule.timeout:
            opened["timeout_ms"] = rule.timeout * 1000
        if rule.escalate_to:
            opened["escalate_to"] = list(rule.escalate_to)
            opened["extend_ms"] = rule.extend * 1000
    return opened


# --- parsing -------------------------------------------------------------------------


def parse(text: str, groups: dict[str, frozenset[str]]) -> ApprovalPolicy:
    """Parse and check the policy JSON against the known groups; PolicyError if malformed."""
    try:
        rules = json.loads(text)
    except json.JSONDecodeError as error:
        raise PolicyError(f"not valid JSON ({error})") from None
    if not isinstance(rules, list) or not rules:
        raise PolicyError("must be a non-empty JSON list of rules")
    parsed: list[Rule] = []
    for index, raw in enumerate(rules):
        rule = _rule(index, raw, groups)
        if any(seen.name == rule.name for seen in parsed):
            raise PolicyError(f"rule {rule.name!r}: a rule with this name comes earlier")
        parsed.append(rule)
    return ApprovalPolicy(tuple(parsed), MappingProxyType(dict(groups)))


def _rule(index: int, raw, groups) -> Rule:
    label = f"rule {index + 1}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{label}: must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PolicyError(f"{label}: needs a non-empty string 'name'")
    label = f"rule {name!r}"

    def fail(problem: str):
        raise PolicyError(f"{label}: {problem}")

    unknown = sorted(set(raw) - _RULE_FIELDS)
    if unknown:
        fail(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(_RULE_FIELDS))})")
    for needed in ("match", "required", "approvers"):
        if needed not in raw:
            fail(f"missing field {needed!r}")
    match = raw["match"]
    if not isinstance(match, dict):
        fail("'match' must be an object")
    unknown = sorted(set(match) - _MATCH_FIELDS)
    if unknown:
        fail(f"unknown match field {unknown[0]!r} (types, priorities, environments)")
    required = raw["required"]
    if type(required) is not int or not 1 <= required <= MAX_REQUIRED:
        fail(f"'required' must be a whole number from 1 to {MAX_REQUIRED}, got {required!r}")
    approvers = _specs(raw["approvers"], "approvers", groups, fail)
    reachable = _headcount(approvers, groups)
    if reachable is not None and reachable < required:
        fail(f"'required' is {required} but only {reachable} principals can approve")
    timeout = raw.get("timeout")
    if timeout is not None and (type(timeout) is not int or timeout < 1):
        fail(f"'timeout' must be a whole number of seconds, at least 1, got {timeout!r}")
    escalate_to, extend = _on_timeout(raw.get("on_timeout", "reject"), groups, fail)
    return Rule(
        name=name,
        required=required,
        approvers=approvers,
        types=_choices(match, "types", TASK_TYPES, fail),
        priorities=_choices(match, "priorities", PRIORITIES, fail),
        environments=_choices(match, "environments", None, fail),
        timeout=timeout,
        escalate_to=escalate_to,
        extend=extend,
    )


def _choices(match: dict, name: str, allowed, fail) -> frozenset[str] | None:
    if name not in match:
        return None
    values = match[name]
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        fail(f"match.{name} must be a non-empty list of strings")
    if allowed is None:
        return frozenset(v.strip().lower() for v in values)
    bad = [v for v in values if v not in allowed]
    if bad:
        fail(f"match.{name} has unknown {bad[0]!r} (known: {', '.join(allowed)})")
    return frozenset(values)


def _specs(values, where: str, groups, fail) -> tuple[str, ...]:
    if not isinstance(values, list) or not values:
        fail(f"'{where}' must be a non-empty list of role:<role>, group:<name> or principals")
    for spec in values:
        if not isinstance(spec, str) or not spec.strip() or any(c.isspace() for c in spec):
            fail(f"'{where}' has {spec!r}, which is not a spec")
        kind, _, name = spec.partition(":")
        if kind == "role" and name not in ROLES:
            fail(f"'{where}' has unknown role {name!r} (roles: {', '.join(ROLES)})")
        if kind == "group" and name.lower() not in groups:
            fail(f"'{where}' names group {name!r}, but ORCHESTRATOR_GROUP_{name.upper()} is unset")
    return tuple(f"group:{s[6:].lower()}" if s.startswith("group:") else s for s in values)


def _headcount(specs: tuple[str, ...], groups) -> int | None:
    """How many principals these specs name; None when a role makes it open-ended."""
    if any(spec.startswith("role:") for spec in specs):
        return None
    named: set[str] = set()
    for spec in specs:
        named |= groups[spec[6:]] if spec.startswith("group:") else {spec}
    return len(named)


def _on_timeout(value, groups, fail) -> tuple[tuple[str, ...], int]:
    if value == "reject":
        return (), 0
    if not isinstance(value, dict):
        fail('\'on_timeout\' must be "reject" or {"escalate_to": [...], "extend": seconds}')
    unknown = sorted(set(value) - _ESCALATION_FIELDS)
    if unknown:
        fail(f"unknown on_timeout field {unknown[0]!r} (escalate_to, extend)")
    extend = value.get("extend")
    if type(extend) is not int or extend < 1:
        fail(f"on_timeout.extend must be a whole number of seconds, at least 1, got {extend!r}")
    return _specs(value.get("escalate_to"), "on_timeout.escalate_to", groups, fail), extend
