"""Token issuance: trade an API key (or an admin token) for a short-lived JWT."""

from __future__ import annotations

from app.auth import current_principal, issue_token, require_role
from app.domain.model import ROLE_RANK, ROLES
from app.errors import Forbidden
from app.parsing import Blueprint
from app.schemas.auth import TokenRequestSchema, TokenSchema
from app.services import current_settings

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Tokens")


@blp.route("/token", methods=["POST"])
@require_role(ROLES[0], forbidden="Not allowed to mint this token")
@blp.arguments(TokenRequestSchema(), required=False, example={})
@blp.response(200, TokenSchema)
def token(body):
    """A JWT for the caller's own principal at its role or lower; admins may name any `sub`."""
    caller = current_principal()
    body = body or {}
    if caller.via != "api_key" and caller.role != "admin":
        raise Forbidden("Tokens are issued to API-key callers and admins")
    role = body.get("role") or caller.role
    if ROLE_RANK[role] > ROLE_RANK[caller.role]:
        raise Forbidden(f"Role {caller.role} cannot obtain a {role} token")
    sub = body.get("sub") or caller.id
    if sub != caller.id and caller.role != "admin":
        raise Forbidden("Only an admin may issue a token for another principal")
    return issue_token(sub, role, current_settings(), minted_by=caller)
