"""Token issuance."""

from __future__ import annotations

from marshmallow import fields, validate

from app.domain.model import ROLES, TOKEN_TYPE
from app.schemas.common import Schema, StrictSchema, describe


class TokenRequestSchema(StrictSchema):
    """Which principal and role the token names; defaults to the caller's own."""

    sub = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Only an admin may name another principal"},
    )
    role = fields.String(
        validate=validate.OneOf(ROLES),
        metadata={"description": "Defaults to the caller's role; never higher"},
    )


class TokenSchema(Schema):
    """A signed HS256 access token and what it grants."""

    access_token = fields.String(required=True)
    token_type = fields.String(required=True, validate=validate.OneOf((TOKEN_TYPE,)))
    expires_in = fields.Integer(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    sub = fields.String(required=True)


describe(
    TokenSchema,
    access_token=(
        "Send as `Authorization: Bearer <token>`",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
    ),
    token_type=("Always bearer", "bearer"),
    expires_in=("Seconds until it expires (ORCHESTRATOR_JWT_EXPIRES)", 3600),
    role=("The role it grants", "agent"),
    sub=("The principal it names", "apikey:agent"),
)
