"""Who is calling: JWT bearer tokens or API keys, roles, and the role check blueprints use."""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass
from datetime import timedelta

import jwt as pyjwt
from flask import Flask, current_app, g, request
from flask_jwt_extended import JWTManager, create_access_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from flask_smorest import Blueprint

from app import metrics
from app.config import Settings
from app.domain.model import ROLE_RANK, ROLES, TOKEN_TYPE
from app.errors import Forbidden, Unauthorized
from app.schemas.common import error_doc
from app.services import current_settings

SECURITY = [{"bearerAuth": []}, {"apiKeyAuth": []}]
API_KEYS = "orchestrator.api_keys"
# The /ui session cookie (app/ui/session.py). authenticate() never reads it: the API
# takes only headers.
SESSION_COOKIE = "orchestrator_ui"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its id (`sub` or `apikey:<name>`), role and credential kind."""

    id: str
    role: str
    via: str
    # RFC 8693 delegation: who minted this token for `id`, then who minted theirs, ...
    act: tuple[str, ...] = ()
    # A scoped API key's agents: it claims and reports only for them (empty: any).
    agents: frozenset[str] = frozenset()
    # A token's expiry (epoch seconds); None for an API key, which does not expire.
    expires_at: int | None = None

    def at_least(self, role: str) -> bool:
        """Whether this principal's role is `role` or stronger."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


class ApiKeyRegistry:
    """Configured API keys, found by the SHA-256 digest of the presented key."""

    def __init__(self, settings: Settings):
        # Keyed by digest, not by key: the dict lookup compares digests, so its timing
        # tells nothing about the secret (comparing a key with each configured one cost
        # one hash comparison per key and request, hundreds with many agents).
        self._principals = {
            hashlib.sha256(k.key.encode()).digest(): Principal(
                k.principal, k.role, "api_key", agents=k.agents
            )
            for k in settings.api_keys
        }

    def match(self, presented: str) -> Principal | None:
        """The principal a presented key belongs to, or None."""
        return self._principals.get(hashlib.sha256(presented.encode()).digest())


def _verify_token(token: str) -> Principal:
    try:
        claims = decode_token(token)
    except pyjwt.InvalidSignatureError:
        if not current_settings().jwt_secret_previous:
            raise Unauthorized("Invalid token") from None
        g.jwt_try_previous_secret = True  # read by the decode key loader below
        try:
            claims = decode_token(token)
        except pyjwt.ExpiredSignatureError:
            raise Unauthorized("Token expired") from None
        except (pyjwt.PyJWTError, JWTExtendedException):
            raise Unauthorized("Invalid token") from None
        finally:
            g.jwt_try_previous_secret = False
    except pyjwt.ExpiredSignatureError:
        raise Unauthorized("Token expired") from None
    except (pyjwt.PyJWTError, JWTExtendedException, ValueError, TypeError):
        raise Unauthorized("Invalid token") from None
    return principal_of(claims, "jwt")


def principal_of(claims: dict, via: str) -> Principal:
    """The principal a verified token's claims name, with every claim that limits it
    (`act`, `agents`); 401 when malformed. The API's tokens and the /ui cookie both."""
    sub, role = claims.get("sub"), claims.get("role")
    if claims.get("type") != "access" or "exp" not in claims:
        raise Unauthorized("Invalid token")
    if not isinstance(sub, str) or not sub or len(sub) > 200:
        raise Unauthorized("Invalid token subject")
    # isinstance first: a list or object role is unhashable and would be a 500, not a 401.
    if not isinstance(role, str) or role not in ROLE_RANK:
        raise Unauthorized("Invalid token role")
    agents = claims.get("agents") or []
    if not isinstance(agents, list) or not all(isinstance(a, str) and a for a in agents):
        raise Unauthorized("Invalid token scope")
    actors = _actors(claims.get("act"))
    return Principal(sub, role, via, actors, frozenset(agents), int(claims["exp"]))


MAX_ACT_DEPTH = 10


def _actors(claim) -> tuple[str, ...]:
    """The `act` chain of a token (RFC 8693 4.1), outermost actor first; 401 when malformed."""
    actors: list[str] = []
    while claim is not None:
        sub = claim.get("sub") if isinstance(claim, dict) else None
        if not isinstance(sub, str) or not sub or len(sub) > 200 or len(actors) >= MAX_ACT_DEPTH:
            raise Unauthorized("Invalid token actor")
        actors.append(sub)
        claim = claim.get("act")
    return tuple(actors)


def _act_claim(actors: tuple[str, ...]) -> dict | None:
    """The nested `act` claim for a chain of actors, outermost first."""
    claim = None
    for actor in reversed(actors):
        claim = {"sub": actor, **({"act": claim} if claim else {})}
    return claim


_FAILURE_REASONS = {
    "Invalid API key": "invalid_api_key",
    "Token expired": "expired_token",
    "Authorization header must be 'Bearer <token>'": "bad_scheme",
}


def authenticate() -> Principal | None:
    """The caller of this request (cached); None when anonymous, 401 when credentials are bad."""
    # One read of g: the limiter's key, the failure counter and the view all ask.
    known = g.get("authenticated")
    if known is not None:
        principal, error = known
        if error is not None:
            raise error
        return principal
    principal = error = None
    headers = request.headers
    header = headers.get("Authorization")
    api_key = headers.get("X-API-Key")
    try:
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("Authorization header must be 'Bearer <token>'")
            principal = _verify_token(token.strip())
        elif api_key is not None:
            principal = _registry().match(api_key)
            if principal is None:
                raise Unauthorized("Invalid API key")
    except Unauthorized as refused:
        error = refused
        metrics.auth_failure(_FAILURE_REASONS.get(refused.detail, "invalid_token"))
        raise
    finally:
        g.principal = principal  # read by the access log line (app/observability.py)
        g.authenticated = (principal, error)
    return principal


def session_subject() -> str | None:
    """The principal id of a valid /ui session cookie, for rate-limit keys; it grants nothing."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return _verify_token(token).id
    except Unauthorized:
        return None


def _registry() -> ApiKeyRegistry:
    return current_app.extensions[API_KEYS]


def current_principal() -> Principal:
    """The authenticated caller; 401 when there is none."""
    principal = authenticate()
    if principal is None:
        metrics.auth_failure("missing_credentials")
        raise Unauthorized()
    return principal


def require_role(role: str | None = None, *, setting: str | None = None, forbidden: str = ""):
    """Decorator: 401 without valid credentials, 403 below `role` (or the role a setting names).

    It also documents the view: both security schemes, the 401, and the 403 (described by
    `forbidden`) unless every principal holds the role.
    """
    responses = {"401": error_doc("Not authenticated")}
    if setting or forbidden or role != ROLES[0]:
        responses["403"] = error_doc(forbidden or "Role too weak")

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_principal()
            needed = getattr(current_settings(), setting) if setting else role
            if not principal.at_least(needed):
                metrics.auth_failure("insufficient_role")
                raise Forbidden(f"Requires role {needed} or higher")
            return view(*args, **kwargs)

        return Blueprint.doc(security=SECURITY, responses=responses)(wrapper)

    return decorate


def issue_token(sub: str, role: str, settings: Settings, minted_by: Principal | None = None):
    """A signed access token and the body POST /auth/token answers.

    A token for another subject names its minter in `act` (RFC 8693), ahead of the
    minter's own chain, so a delegation can never be laundered into a plain token.
    """
    lifetime = settings.jwt_expires
    if minted_by is not None and minted_by.expires_at is not None:
        # A token minted with a token ends when that one does: otherwise an admin token
        # could renew itself for ever, outliving its own expiry.
        lifetime = max(1, min(lifetime, minted_by.expires_at - int(time.time())))
    expires = timedelta(seconds=lifetime)
    actors = ()
    if minted_by is not None:
        actors = ((minted_by.id,) if sub != minted_by.id else ()) + minted_by.act
    claims = {"role": role}
    if actors:
        claims["act"] = _act_claim(actors)
    if minted_by is not None and minted_by.agents:
        # A scoped key's token acts for the same agents: never worth more than its minter.
        claims["agents"] = sorted(minted_by.agents)
    token = create_access_token(identity=sub, additional_claims=claims, expires_delta=expires)
    return {
        "access_token": token,
        "token_type": TOKEN_TYPE,
        "expires_in": lifetime,
        "role": role,
        "sub": sub,
    }


def init_app(app: Flask, settings: Settings) -> None:
    """Configure flask-jwt-extended and the API-key registry."""
    app.config.update(
        JWT_SECRET_KEY=settings.jwt_secret,
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=settings.jwt_expires),
        JWT_VERIFY_SUB=True,
    )
    app.extensions[API_KEYS] = ApiKeyRegistry(settings)
    jwt = JWTManager(app)

    @jwt.decode_key_loader
    def _decode_key(_header, _claims):
        # Rotation: after a signature mismatch, one retry with the previous secret.
        if g.get("jwt_try_previous_secret"):
            return current_settings().jwt_secret_previous
        return current_settings().jwt_secret
