"""Which rate-limit budget each endpoint spends: split by what the call does.

A budget is one ORCHESTRATOR_RATE_LIMIT_* variable and one bucket per principal (or
client address), shared by every endpoint that spends it: an agent polling claim and
heartbeat draws on `agent_ops`, a dashboard paging tasks and events on `reads`, and
neither eats into the budget for creating tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, request
from flask_limiter import Limiter

from app.config import Settings

# Blueprints whose GETs all spend the shared read budget.
READ_BLUEPRINTS = frozenset({"tasks", "events", "approvals", "agents"})


@dataclass(frozen=True)
class Budget:
    """A shared bucket: the Settings field holding its per-minute limit, and its scope."""

    setting: str
    scope: str
    covers: str

    @property
    def variable(self) -> str:
        """The environment variable that sets it."""
        return f"ORCHESTRATOR_{self.setting.upper()}"


CREATE = Budget("rate_limit_tasks", "tasks.create", "creating tasks")
READS = Budget("rate_limit_reads", "reads", "every GET of tasks, events, approvals and agents")
AGENT_OPS = Budget("rate_limit_agent_ops", "agent_ops", "claim, heartbeat, status and cancel")
PUBLISH = Budget("rate_limit_events", "events.publish", "publishing events")
DECIDE = Budget("rate_limit_approvals", "approvals.decide", "approving and rejecting")
STATS = Budget("rate_limit_stats", "stats", "GET /stats")
BUDGETS = (CREATE, READS, AGENT_OPS, PUBLISH, DECIDE, STATS)


def budget_for(endpoint: str, methods: set[str] | frozenset[str]) -> Budget | None:
    """The budget an endpoint spends, or None for ORCHESTRATOR_RATE_LIMIT_DEFAULT."""
    blueprint = endpoint.split(".", 1)[0]
    if blueprint in READ_BLUEPRINTS and "GET" in methods:
        return READS
    if endpoint == "tasks.create_task":
        return CREATE
    # Decision links (the confirmation page and its button) spend the approvals budget.
    spends = {"tasks": AGENT_OPS, "events": PUBLISH, "approvals": DECIDE, "decisions": DECIDE}
    return {**spends, "stats": STATS}.get(blueprint)


def _spent_budget(cache: dict) -> Budget | None:
    """The budget this request spends, looked up once per endpoint and method."""
    method = "GET" if request.method in ("GET", "HEAD") else request.method
    key = (request.endpoint or "", method)
    if key not in cache:
        cache[key] = budget_for(key[0], {method})
    return cache[key]


def attach_budgets(app: Flask, limiter: Limiter, settings: Settings) -> None:
    """Give each blueprint one shared limit: the budget the request spends.

    Blueprint limits are checked once, before the view (route decorators would run the
    limiter twice). One limit per blueprint, whose value and scope are the request's
    budget's, rather than one per budget, each exempt unless the request spends it:
    flask-limiter parses and wraps every limit of the blueprint on every request. The
    bucket is the same (the scope names the budget, the amount its setting). Blueprints
    with no budget keep the default limit.
    """
    cache: dict[tuple[str, str], Budget | None] = {}
    default = f"{settings.rate_limit_default}/minute"

    def limit_value() -> str:
        # Read before exempt_when: a request that spends no budget gets some valid string.
        budget = _spent_budget(cache)
        return f"{getattr(settings, budget.setting)}/minute" if budget else default

    def scope(_endpoint: str) -> str:
        return _spent_budget(cache).scope

    blueprints = {
        rule.endpoint.split(".", 1)[0]
        for rule in app.url_map.iter_rules()
        if budget_for(rule.endpoint, rule.methods or set()) is not None
    }
    for blueprint in sorted(blueprints):
        limiter.shared_limit(
            limit_value, scope=scope, exempt_when=lambda: _spent_budget(cache) is None
        )(app.blueprints[blueprint])
