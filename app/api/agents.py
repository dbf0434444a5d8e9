"""Agents: who is there, how much work waits for each, and when each last showed up."""

from __future__ import annotations

from app.auth import require_role
from app.parsing import Blueprint
from app.schemas.stats import AgentListSchema
from app.services import current_settings, services

blp = Blueprint(
    "agents",
    __name__,
    url_prefix="/agents",
    description="The agents at work: queue depth, running tasks, last claim and heartbeat",
)


@blp.route("", methods=["GET"])
@require_role("user")
@blp.response(200, AgentListSchema)
def list_agents():
    """Every agent seen or routed to, with its queue, running tasks and last activity."""
    agents = services().stats.agents(current_settings().agents)
    return {"success": True, "count": len(agents), "agents": agents}
