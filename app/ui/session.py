"""Sign-in for /ui: an API key exchanged for a short JWT in an HttpOnly cookie.

flask-jwt-extended's cookie mode does the cookie and its CSRF double-submit check: the
token carries a `csrf` claim, every form posts it back as `csrf_token`, and a POST
without the matching value is refused before any view runs. The cookie's path is /ui,
and app/auth.py reads only headers, so the API never accepts it.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

import jwt as pyjwt
from flask import Flask, current_app, g, redirect, render_template, request, url_for
from flask_jwt_extended import (
    create_access_token,
    get_jwt,
    set_access_cookies,
    unset_access_cookies,
    verify_jwt_in_request,
)
from flask_jwt_extended.exceptions import CSRFError, JWTExtendedException, NoAuthorizationError

from app import auth_failures, metrics
from app.auth import API_KEYS, SESSION_COOKIE, Principal, principal_of
from app.config import Settings
from app.errors import Unauthorized
from app.services import current_settings
from app.ui import bp

COOKIE = SESSION_COOKIE
LOGIN_NONCE = "orchestrator_ui_login"
# Short on purpose: a browser left open signs itself out within the hour.
MAX_SESSION = timedelta(hours=1)
# The claim only sign-in puts in its tokens: an API token set as the cookie (from
# /auth/token, for up to ORCHESTRATOR_JWT_EXPIRES) is not a session.
SESSION_CLAIM = "ui_session"


def configure(app: Flask, settings: Settings) -> None:
    """Cookies for /ui next to the API's headers; the API itself never reads cookies."""
    app.config.update(
        JWT_TOKEN_LOCATION=["headers", "cookies"],
        JWT_ACCESS_COOKIE_NAME=COOKIE,
        JWT_ACCESS_COOKIE_PATH="/ui",
        JWT_COOKIE_SECURE=settings.environment != "development",
        JWT_COOKIE_SAMESITE="Lax",
        JWT_COOKIE_CSRF_PROTECT=True,
        # The token goes into each form from the page itself, so no script-readable
        # CSRF cookie is needed.
        JWT_CSRF_IN_COOKIES=False,
        JWT_CSRF_CHECK_FORM=True,
        JWT_SESSION_COOKIE=True,
    )


def session_lifetime() -> timedelta:
    """The UI token's lifetime: the configured JWT lifetime, at most an hour."""
    return min(timedelta(seconds=current_settings().jwt_expires), MAX_SESSION)


def csrf_token() -> str:
    """The value every form of this page posts back."""
    return get_jwt().get("csrf", "")


def _principal_from_cookie() -> Principal:
    verify_jwt_in_request(locations=["cookies"])  # checks the CSRF field on POST
    claims = get_jwt()
    if claims.get(SESSION_CLAIM) is not True:
        raise NoAuthorizationError("Not a session")
    # Read as the API reads a token, its `act` chain and scope included (four eyes
    # compares the chain here too).
    try:
        return principal_of(claims, "ui_cookie")
    except Unauthorized:
        raise NoAuthorizationError("Invalid session") from None


def page(role: str | None = None):
    """Decorator: a signed-in principal (g.ui_principal) of at least `role`, else refused.

    Without a session a GET goes to the sign-in page and a POST is a 401; a POST whose
    CSRF field is missing or wrong is a 403.
    """

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            try:
                principal = _principal_from_cookie()
            except CSRFError:
                metrics.auth_failure("csrf")
                return _refused(403, "This form was not sent by this page. Reload and retry.")
            except (JWTExtendedException, pyjwt.PyJWTError):
                if request.method != "GET":
                    return _refused(401, "Your session ended. Sign in again.")
                return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
            g.ui_principal = principal
            if role and not principal.at_least(role):
                metrics.auth_failure("insufficient_role")
                return _refused(403, f"Requires role {role} or higher.")
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _refused(status: int, detail: str):
    return render_template("ui/error.html", status=status, detail=detail), status


def _safe_next(target: str | None) -> str:
    """Only a path inside /ui: never an open redirect."""
    target = target or ""
    parts = urlsplit(target)
    outside = parts.scheme or parts.netloc or not parts.path.startswith("/ui/")
    if outside or "\\" in target or parts.path.startswith(("/ui/login", "/ui/logout")):
        return url_for("ui.inbox")
    return target


def _login_page(status: int = 200, error: str | None = None):
    # A login-CSRF guard: the form's nonce must match a SameSite=Strict cookie, so no
    # other site can sign a browser in under its own key.
    nonce = secrets.token_urlsafe(24)
    body = render_template(
        "ui/login.html", nonce=nonce, error=error, next=_safe_next(request.values.get("next"))
    )
    response = current_app.make_response((body, status))
    response.set_cookie(
        LOGIN_NONCE,
        nonce,
        path="/ui/login",
        httponly=True,
        samesite="Strict",
        secure=current_app.config["JWT_COOKIE_SECURE"],
    )
    return response


@bp.route("/login", methods=["GET"])
def login():
    """The sign-in form."""
    return _login_page()


@bp.route("/login", methods=["POST"])
def login_submit():
    """Exchange an API key for the session cookie; the key is never shown back."""
    sent, expected = request.form.get("nonce", ""), request.cookies.get(LOGIN_NONCE, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        metrics.auth_failure("csrf")
        return _login_page(403, "The sign-in form expired. Try again.")
    principal = current_app.extensions[API_KEYS].match(request.form.get("api_key", ""))
    if principal is None:
        metrics.auth_failure("invalid_api_key")
        # A guess here counts against the address as one in X-API-Key would.
        return auth_failures.count_failure() or _login_page(401, "That API key is not valid.")
    token = create_access_token(
        identity=principal.id,
        # A scoped key's agents travel with the session, so the pages keep its scope.
        additional_claims={
            "role": principal.role,
            "agents": sorted(principal.agents),
            SESSION_CLAIM: True,
        },
        expires_delta=session_lifetime(),
    )
    response = redirect(_safe_next(request.form.get("next")), code=303)
    set_access_cookies(response, token)
    response.delete_cookie(LOGIN_NONCE, path="/ui/login")
    return response


@bp.route("/logout", methods=["GET"])
def logout():
    """Clear the session cookie (a link: clearing grants nothing, so it needs no token)."""
    response = redirect(url_for("ui.login"), code=303)
    unset_access_cookies(response)
    return response
