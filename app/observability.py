"""Logs, request ids and Sentry: seeing the service without ever seeing a secret."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

from flask import Flask, g, request
from gunicorn.glogging import Logger
from pythonjsonlogger.json import JsonFormatter

from app.config import Settings

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SENSITIVE_HEADERS = frozenset(
    {"authorization", "x-api-key", "cookie", "set-cookie", "proxy-authorization"}
)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


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
    """gunicorn logs its start-up and worker lines as `gunicorn.error`; they are not errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Relabel the record; keep it."""
        if record.name == "gunicorn.error":
            record.name = "gunicorn"
        return True


def configure_logging(level: str, log_format: str = "json") -> None:
    """One line per record on stdout (LOG_FORMAT), for the app and gunicorn alike."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(make_formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def scrub_event(event: dict, _hint: dict | None = None) -> dict:
    """Sentry before_send: drop credentials and cookies from the captured request."""
    req = event.get("request") or {}
    headers = req.get("headers")
    if isinstance(headers, dict):
        req["headers"] = {k: v for k, v in headers.items() if k.lower() not in SENSITIVE_HEADERS}
    elif isinstance(headers, list):
        req["headers"] = [pair for pair in headers if str(pair[0]).lower() not in SENSITIVE_HEADERS]
    req.pop("cookies", None)
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
        g.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.environ["orchestrator.request_id"] = g.request_id

    @app.after_request
    def tag_response(response):
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        principal = g.get("principal")
        # Read by the gunicorn access logger, which writes the one access line.
        request.environ["orchestrator.principal"] = principal.id if principal else "-"
        return response


class GunicornLogger(Logger):
    """gunicorn's logger_class: JSON lines; one access line per request naming the principal.

    The app leaves the principal and request id in the WSGI environ, which gunicorn
    hands to access() after the response, so the one access line carries both.
    """

    def setup(self, cfg):
        super().setup(cfg)
        formatter = make_formatter(log_format_from_env())
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(formatter)
                handler.addFilter(GunicornName())

    def access(self, resp, req, environ, request_time):
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.syslog):
            return
        self.access_log.info(
            "request",
            extra={
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("PATH_INFO"),
                "status": resp.status_code,
                "duration_ms": round(request_time.total_seconds() * 1000, 2),
                "principal": environ.get("orchestrator.principal", "-"),
                "request_id": environ.get("orchestrator.request_id", "-"),
                "remote_addr": environ.get("REMOTE_ADDR"),
            },
        )
