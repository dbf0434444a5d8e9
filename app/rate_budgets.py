"""Which rate-limit budget each endpoint spends: split by what the call does.

A budget is one ORCHESTRATOR_RATE_LIMIT_* variable and one bucket per principal (or
client address), shared by every endpoint that spends it: an agent polling claim and
heartbeat draws on `agent_ops`, a dashboard paging tasks and events on `reads`, and
neither eats into the budget for creating tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
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


def budget_for(endpoint: str, methods: set[str] | frozenset[str]) -> Budget | None:
    """The budget an endpoint spends, or None for ORCHESTRATOR_RATE_LIMIT_DEFAULT."""
    blueprint = endpoint.split(".", 1)[0]
    if blueprint in READ_BLUEPRINTS and "GET" in methods:
        return READS
    if endpoint == "tasks.create_task":
        return CREATE
    return {"tasks": AGENT_OPS, "events": PUBLISH, "approvals": DECIDE, "stats": STATS}.get(
        blueprint
    )


def attach_budgets(app: Flask, limiter: Limiter, settings: Settings) -> None:
    """Give each registered view its budget's shared limit (others keep the default)."""
    done: set[str] = set()
    for rule in app.url_map.iter_rules():
        budget = budget_for(rule.endpoint, rule.methods or set())
        if budget is not None and rule.endpoint not in done:
            done.add(rule.endpoint)
            limit = f"{getattr(settings, budget.setting)}/minute"
            # flask-limiter checks a route limit in the wrapper it returns, so the
            # registered view is replaced by it.
            limited = limiter.shared_limit(limit, scope=budget.scope)
            app.view_functions[rule.endpoint] = limited(app.view_functions[rule.endpoint])
