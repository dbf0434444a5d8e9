"""Domain exceptions and the one place that turns any error into JSON."""

from __future__ import annotations

import logging

import redis
import sentry_sdk
from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

from app.redis_client import REDIS_LOCATION

log = logging.getLogger("orchestrator.errors")

# Redis answers that mean "not now" rather than "wrong": unreachable or slow, a primary
# demoted during a fail-over (READONLY), no primary known yet (MasterNotFoundError is a
# ConnectionError), a replica still loading, a cluster re-electing or moving slots, or
# no cluster node reachable (RedisClusterException, which is not a RedisError; with
# every key in one slot its other use, keys of several slots, cannot happen here).
REDIS_UNAVAILABLE = (
    redis.exceptions.RedisClusterException,
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ClusterError,
    redis.exceptions.AskError,  # and MovedError: a slot moving under a node-level call
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    redis.exceptions.SlotNotCoveredError,
)


class ApiError(Exception):
    """Base of every error the service answers on purpose."""

    status = 400

    def __init__(
        self,
        detail: str,
        *,
        errors: dict | None = None,
        extra: dict | None = None,
        headers: dict | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or {}


class BadRequest(ApiError):
    """400: the request could not be read."""

    status = 400


class Unauthorized(ApiError):
    """401: missing or invalid credentials; always with WWW-Authenticate."""

    status = 401

    def __init__(self, detail: str = "Not authenticated", **kwargs):
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer, ApiKey header="X-API-Key"'})
        super().__init__(detail, **kwargs)


class Forbidden(ApiError):
    """403: valid credentials, not allowed."""

    status = 403


class NotFound(ApiError):
    """404: no such task or approval."""

    status = 404


class Conflict(ApiError):
    """409: the state machine refuses the change."""

    status = 409


class ValidationFailed(ApiError):
    """422: the request breaks its schema."""

    status = 422


class Unavailable(ApiError):
    """503: Redis did not answer in time."""

    status = 503


# The 503s of a write whose outcome is not known (app/domain/scripts.py).
UNCONFIRMED = (
    "Redis replicas did not confirm the write in time; it may be lost in a fail-over. "
    "Retrying with the same Idempotency-Key is safe"
)
# A write sent to a Redis that then did not answer (frozen, overloaded) may still run
# when it resumes: unlike a refused connection, its outcome is unknown.
MAYBE_APPLIED = (
    "Redis did not answer in time; the change may still be applied. "
    "Retrying a create with the same Idempotency-Key is safe"
)


def error_response(
    status: int,
    detail: str,
    *,
    errors: dict | None = None,
    extra: dict | None = None,
    headers: dict | None = None,
):
    """Build the JSON error body every failure uses: {"detail", "errors"?, ...}."""
    body = {"detail": detail, **(extra or {})}
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def flatten_validation_messages(messages: dict) -> dict:
    """webargs nests errors by location ({"json": {...}}); clients want {field: [...]}."""
    flat: dict = {}
    for location_or_field, value in messages.items():
        if location_or_field in (
            "json",
            "query",
            "form",
            "headers",
            "path",
            "view_args",
        ) and isinstance(value, dict):
            for name, problems in value.items():
                flat.setdefault(name, []).extend(_as_list(problems))
        else:
            flat.setdefault(location_or_field, []).extend(_as_list(value))
    return flat


def _as_list(problems) -> list:
    if isinstance(problems, list):
        return [p if isinstance(p, str) else str(p) for p in problems]
    if isinstance(problems, dict):
        return [f"{k}: {v}" for k, v in problems.items()]
    return [str(problems)]


def handle_http_exception(error: HTTPException):
    """Every werkzeug/flask HTTP error, including webargs' 422, as {"detail": ...}."""
    if isinstance(error, InternalServerError):
        return handle_unexpected(getattr(error, "original_exception", None) or error)
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if error.code == 422 and messages:
        return error_response(
            422, "Validation failed", errors=flatten_validation_messages(messages)
        )
    if error.code == 400 and messages:
        return error_response(
            400, "Malformed JSON body", errors=flatten_validation_messages(messages)
        )
    detail = data.get("message") or error.description or error.name
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    headers.update(data.get("headers") or {})
    return error_response(error.code or 500, detail, headers=headers)


# How long a client should wait before retrying while Redis is full: agents draining the
# queues and terminal tasks expiring free memory over minutes, not seconds.
MEMORY_RETRY_AFTER = "30"


def is_out_of_memory(error: BaseException) -> bool:
    """Whether Redis refused a write because it reached maxmemory (noeviction)."""
    return isinstance(error, redis.OutOfMemoryError) or isinstance(
        getattr(error, "__cause__", None), redis.OutOfMemoryError
    )


def _warn_redis_unavailable(what: str) -> None:
    location = current_app.extensions.get(REDIS_LOCATION, "?")
    log.warning("redis unavailable at %s: %s", location, what)


def handle_unexpected(error: BaseException):
    """Redis trouble is 503; anything else a bare 500 — never a traceback in the body."""
    if is_out_of_memory(error):
        log.warning("redis out of memory")
        return error_response(
            503, "Redis is out of memory", headers={"Retry-After": MEMORY_RETRY_AFTER}
        )
    if isinstance(error, REDIS_UNAVAILABLE) or isinstance(
        getattr(error, "__cause__", None), REDIS_UNAVAILABLE
    ):
        _warn_redis_unavailable(type(error).__name__)
        return error_response(503, "Redis unavailable", headers={"Retry-After": "5"})
    if isinstance(error, ApiError):
        return handle_api_error(error)
    if isinstance(error, RecursionError):  # json.loads on a body nested thousands deep
        return error_response(400, "Malformed JSON body: nested too deeply")
    log.exception("unhandled error", exc_info=error)
    # The catch-all handler keeps Sentry's Flask hook from seeing the error: report it
    # here (a no-op when Sentry is off). before_send strips credentials.
    sentry_sdk.capture_exception(error)
    return error_response(500, "Internal server error")


def handle_api_error(error: ApiError):
    """A domain exception as its JSON error response."""
    if isinstance(error.__cause__, REDIS_UNAVAILABLE):  # e.g. a write Redis did not answer
        _warn_redis_unavailable(f"{type(error.__cause__).__name__} ({error.detail})")
    return error_response(
        error.status, error.detail, errors=error.errors, extra=error.extra, headers=error.headers
    )


def init_app(app: Flask, _settings=None) -> None:
    """Route every error through error_response (HTTP errors: the docs' Api registers them)."""
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(Exception, handle_unexpected)
