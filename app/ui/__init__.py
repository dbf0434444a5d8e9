"""Pages for people: approvals inbox, task board and webhooks, server-rendered under /ui.

A thin layer like app/api: views call the same domain services with the same role
ranks, and every gate rule (four eyes, who may decide) is the domain's. Sign-in lives in
app/ui/session.py; approvals, tasks and webhooks each have their own module.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flask import Blueprint, Flask, g, render_template, request

from app.config import Settings
from app.errors import ApiError, handle_unexpected

bp = Blueprint(
    "ui", __name__, url_prefix="/ui", static_folder="../static/ui", static_url_path="/static"
)

# No inline script or style anywhere: htmx and ui.js come from 'self', and htmx's
# indicator <style> is switched off in base.html. connect-src for htmx' polling.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@bp.after_request
def security_headers(response):
    """Strict headers on every /ui response, pages and assets alike."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


@bp.errorhandler(ApiError)
def domain_error(error: ApiError):
    """A domain refusal (unknown task, bad filter, Redis down) as a page, not JSON."""
    return render_template("ui/error.html", status=error.status, detail=error.detail), error.status


@bp.errorhandler(Exception)
def unexpected_error(error: Exception):
    """Redis down (503) or a bug (500): logged and reported as for the API, shown as a page."""
    response = handle_unexpected(error)
    status, detail = response.status_code, response.get_json()["detail"]
    return render_template("ui/error.html", status=status, detail=detail), status


@bp.app_template_filter("pretty")
def pretty(value) -> str:
    """JSON indented for reading."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@bp.app_template_filter("when")
def when(stamp: str | None) -> str:
    """'2026-12-01 03:00:44 UTC' for an ISO-8601 UTC timestamp: breaks between date and time."""
    if not stamp:
        return "—"
    return stamp.replace("T", " ").split(".")[0].removesuffix("Z") + " UTC"


@bp.app_template_filter("time_left")
def time_left(expires_at: str | None, now: datetime | None = None) -> str:
    """'12 min left' (or 'expired') for an ISO-8601 deadline; '' without one."""
    if not expires_at:
        return ""
    try:
        deadline = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = int((deadline - (now or datetime.now(UTC))).total_seconds())
    if seconds <= 0:
        return "expired"
    if seconds < 3600:
        return f"{max(1, seconds // 60)} min left"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min left"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h left"


@bp.context_processor
def _template_helpers() -> dict:
    return {"principal": g.get("ui_principal"), "nav": request.endpoint}


def init_app(app: Flask, settings: Settings) -> None:
    """Cookie sessions for /ui only, and the pages."""
    from app.ui import approvals, session, tasks, webhooks  # noqa: F401  (views register on bp)

    session.configure(app, settings)
    app.register_blueprint(bp)
