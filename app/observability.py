"""Logs, request ids and Sentry: seeing the service without ever seeing a secret."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

from flask import Flask, g, request
from gunicorn import util as gunicorn_util
from gunicorn.glogging import Logger
from pythonjsonlogger.json import JsonFormatter

from app.config import Settings

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SENSITIVE_HEADERS = frozenset(
    {"authorization", "x-api-key", "cookie", "set-cookie", "proxy-authorization"}
)
# Form fields of the /ui sign-in and decision forms that are credentials.
SENSITIVE_FIELDS = frozenset({"api_key", "csrf_token", "nonce"})
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# A decision link's token (app/api/decisions.py) is its credential, and it is the path.
LINK_TOKEN = re.compile(r"(/decisions/)[^/?#]+")


def redact_path(path: str) -> str:
    """A path or URL fit for a log line or Sentry: a decision link's token replaced."""
    return LINK_TOKEN.sub(r"\1<token>", path)


def _json_formatter() -> JsonFormatter:
    return PlainJsonFormatter(LOG_FORMAT, rename_fields={"levelname": "level", "asctime": "time"})


# --- LOG_FORMAT: console (people) or json (machines) -----------------------------------
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Attributes every LogRecord has: whatever else a record carries came as `extra`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


class PlainJsonFormatter(JsonFormatter):
    """JSON lines with no terminal colour codes inside (a library may colour its text)."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line, ANSI escapes removed from the message."""
        record.msg = ANSI.sub("", str(record.msg))
        return super().format(record)


class ConsoleFormatter(logging.Formatter):
    """One readable line: time, level, logger, message, then the extras as key=value."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """The line, with any `extra` fields appended."""
        line = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        return " ".join([line, *(f"{k}={v}" for k, v in extras.items())])


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter LOG_FORMAT names."""
    return ConsoleFormatter() if log_format == "console" else _json_formatter()


def log_format_from_env() -> str:
    """LOG_FORMAT as the settings read it (gunicorn's master has no app); json if invalid."""
    try:
        return Settings.from_env().log_format
    except Exception:  # noqa: BLE001 - the configuration check reports it in one line
        return "json"


class GunicornName(logging.Filter):
    """gunicorn logs its start-up and worker lines as `gunicorn.error`; they are not errors.
    Paths in its messages lose a decision link's token."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Relabel the record; keep it."""
        if record.name == "gunicorn.error":
            record.name = "gunicorn"
        # Its DEBUG request lines ("GET /decisions/<token>") would log a link's token.
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(redact_path(a) if isinstance(a, str) else a for a in record.args)
        return True


def configure_logging(level: str, log_format: str = "json") -> None:
    """One line per record on stdout (LOG_FORMAT), for the app and gunicorn alike."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(make_formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def scrub_event(event: dict, _hint: dict | None = None) -> dict:
    """Sentry before_send: drop credentials, cookies and credential form fields."""
    req = event.get("request") or {}
    headers = req.get("headers")
    if isinstance(headers, dict):
        req["headers"] = {k: v for k, v in headers.items() if k.lower() not in SENSITIVE_HEADERS}
    elif isinstance(headers, list):
        req["headers"] = [pair for pair in headers if str(pair[0]).lower() not in SENSITIVE_HEADERS]
    req.pop("cookies", None)
    if isinstance(req.get("url"), str):
        req["url"] = redact_path(req["url"])
    if isinstance(req.get("data"), dict):
        req["data"] = {k: v for k, v in req["data"].items() if k not in SENSITIVE_FIELDS}
    return event


def init_sentry(settings: Settings, transport=None) -> bool:
    """Sentry only when SENTRY_DSN is set; never with PII or credentials."""
    if not settings.sentry_dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    from app import __version__

    options = {"transport": transport} if transport is not None else {}
    # send_default_pii is left unset, which is off: setting it at all is deprecated in
    # sentry-sdk 2.x, and `data_collection` would switch off the SDK's own scrubber.
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.environment,
        release=settings.release or f"orchestrator-api@{__version__}",
        traces_sample_rate=settings.sentry_traces_sample_rate,
        integrations=[FlaskIntegration()],
        # Stack-frame locals hold task payloads, bodies and credentials: never sent.
        include_local_variables=False,
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        **options,
    )
    return True


def init_app(app: Flask, settings: Settings) -> None:
    """Logging, request ids (accepted when well-formed, else generated) and Sentry."""
    if settings.environment != "testing":
        configure_logging(settings.log_level, settings.log_format)
    init_sentry(settings)

    @app.before_request
    def assign_request_id():
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.request_id = request.environ["orchestrator.request_id"] = request_id

    @app.after_request
    def tag_response(response):
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        principal = g.get("principal")
        # Read by the gunicorn access logger, which writes the one access line.
        request.environ["orchestrator.principal"] = principal.id if principal else "-"
        return response


def _json_error(sock, status_int, reason, mesg):
    """gunicorn's own error answer (400/414/431/501...) as {"detail": ...} instead of HTML."""
    logger = GunicornLogger.active
    if logger is not None and not logger.own_error_logged:
        # gunicorn logs an access line only when it parsed a request line; an over-long
        # one (414) or broken headers leave none, so the refusal is logged here.
        logger.access_line(status_int, {})
    if logger is not None:
        logger.own_error_logged = False
    body = json.dumps({"detail": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin1") + body)


def _status_code(resp) -> int | None:
    """The status of an app response (status_code) or of gunicorn's own ("400 Bad Request")."""
    code = getattr(resp, "status_code", None)
    if code is None:
        first = str(getattr(resp, "status", "") or "").split(None, 1)
        code = int(first[0]) if first and first[0].isdigit() else None
    return code


class GunicornLogger(Logger):
    """gunicorn's logger_class: JSON lines; one access line per request naming the principal.

    The app leaves the principal and request id in the WSGI environ, which gunicorn
    hands to access() after the response, so the one access line carries both. gunicorn
    also calls access() for the errors it answers itself (a malformed request never
    reaches the app); those responses have no status_code, and an exception here would
    kill the worker, so the status is read defensively.
    """

    active: GunicornLogger | None = None
    own_error_logged = False

    def setup(self, cfg):
        super().setup(cfg)
        GunicornLogger.active = self
        formatter = make_formatter(log_format_from_env())
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(formatter)
                handler.addFilter(GunicornName())
        # gunicorn has no hook for its error bodies; workers call util.write_error by
        # module attribute, so replacing it makes them JSON like every other error.
        gunicorn_util.write_error = _json_error

    def access(self, resp, req, environ, request_time):
        # Sync workers handle one request at a time: the flag tells the error writer
        # that follows that this refusal already has its line.
        self.own_error_logged = getattr(resp, "status_code", None) is None
        self.access_line(_status_code(resp), environ, request_time.total_seconds())

    def access_line(self, status: int | None, environ: dict, seconds: float = 0.0) -> None:
        """The one JSON access line: method, path, status, duration, principal, request id."""
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.syslog):
            return
        self.access_log.info(
            "request",
            extra={
                "method": environ.get("REQUEST_METHOD", "-"),
                "path": redact_path(environ.get("PATH_INFO", "-")),
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "principal": environ.get("orchestrator.principal", "-"),
                "request_id": environ.get("orchestrator.request_id", "-"),
                "remote_addr": environ.get("REMOTE_ADDR"),
            },
        )
