"""Token issuance: trade an API key (or an admin token) for a short-lived JWT."""

from __future__ import annotations

from flask_smorest import Blueprint

from app.api import LIMITED, WITH_BODY, document_errors
from app.auth import ROLE_RANK, SECURITY, current_principal, issue_token
from app.errors import Forbidden
from app.extensions import get_settings
from app.schemas.auth import TokenRequestSchema, TokenSchema

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Tokens")


@blp.route("/token", methods=["POST"])
@blp.doc(security=SECURITY)
@blp.arguments(TokenRequestSchema(), required=False)
@blp.response(200, TokenSchema)
@document_errors(blp, 401, 403, *WITH_BODY, *LIMITED, e403="Not allowed to mint this token")
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
    return issue_token(sub, role, get_settings())
