"""Which rate-limit budget each endpoint spends: split by what the call does.

A budget is one ORCHESTRATOR_RATE_LIMIT_* variable and one bucket per principal (or
client address), shared by every endpoint that spends it: an agent polling claim and
heartbeat draws on `agent_ops`, a dashboard paging tasks and events on `reads`, and
neither eats into the budget for creating tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

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


def _spends_other_budget(budget: Budget) -> bool:
    """exempt_when of a budget's limit: this request spends another budget."""
    methods = {"GET"} if request.method in ("GET", "HEAD") else {request.method}
    return budget_for(request.endpoint or "", methods) is not budget


def attach_budgets(app: Flask, limiter: Limiter, settings: Settings) -> None:
    """Give each blueprint one shared limit per budget its endpoints spend.

    Blueprint limits are checked once, before the view; each applies only to the
    requests that spend its budget (route decorators would run the limiter twice).
    Blueprints with no budget keep the default limit.
    """
    pairs = {
        (rule.endpoint.split(".", 1)[0], budget)
        for rule in app.url_map.iter_rules()
        if (budget := budget_for(rule.endpoint, rule.methods or set())) is not None
    }
    for blueprint, budget in sorted(pairs, key=lambda pair: (pair[0], pair[1].scope)):
        limiter.shared_limit(
            f"{getattr(settings, budget.setting)}/minute",
            scope=budget.scope,
            exempt_when=partial(_spends_other_budget, budget),
        )(app.blueprints[blueprint])
