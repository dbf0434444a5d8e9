"""Typed settings: every environment variable is declared once, here.

Each field of Settings names its variable, default and rule (`setting(...)`);
app/config_parsing.py reads those declarations, so a default is written in exactly one
place. gunicorn.conf.py checks the configuration in the master before any worker starts.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from app.domain.approval_policy import ApprovalPolicy
from app.domain.model import (
    DEFAULT_GATED_PRIORITIES,
    DEFAULT_GATED_TYPES,
    DEFAULT_ROUTES,
    DEFAULT_UNGATED_ENVIRONMENTS,
    PRIORITIES,
    ROLES,
)

ENVIRONMENTS = ("development", "staging", "production", "testing")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("console", "json")


class ConfigError(Exception):
    """A variable has a bad value; the message names it and says how to fix it."""

    def __init__(self, variable: str, fix: str):
        super().__init__(f"{variable}: {fix}")
        self.variable = variable


@dataclass(frozen=True)
class ApiKey:
    """One configured API key: the secret, its role and the principal it names."""

    key: str = field(repr=False)
    role: str
    principal: str
    # Agents this key may claim and report for (`key:agent:dev_agent+ops_agent`); empty:
    # any agent, as before scopes existed.
    agents: frozenset[str] = frozenset()


def setting(variable: str, default, kind: str, *, secret: bool = False, **rule):
    """A Settings field read from `variable` by the parser method `kind`, with its rule.

    `rule` holds the bounds the parser checks (minimum, low/high, choices).
    """
    metadata = {"env": variable, "kind": kind, **rule}
    if isinstance(default, (dict, list, set)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, repr=not secret, metadata=metadata)


def per_minute(variable: str, default: int):
    """A rate limit: requests per minute, at least 1."""
    return setting(variable, default, "integer", minimum=1)


@dataclass(frozen=True)
class Settings:
    """Every setting the service reads, typed; README.md's configuration table lists them."""

    environment: str = setting(
        "ENVIRONMENT", "development", "choice", choices=ENVIRONMENTS, fold="lower"
    )
    jwt_secret: str = setting("ORCHESTRATOR_JWT_SECRET", "", "jwt_secret", secret=True)
    jwt_secret_previous: str = setting(
        "ORCHESTRATOR_JWT_SECRET_PREVIOUS", "", "jwt_secret", secret=True, required=False
    )
    api_keys: tuple[ApiKey, ...] = setting("ORCHESTRATOR_API_KEYS", (), "api_keys")
    redis_url: str = setting("REDIS_URL", "redis://localhost:6379/0", "redis_url", secret=True)
    redis_tls_verify: bool = setting("REDIS_TLS_VERIFY", True, "boolean")
    # Replicas that must confirm each write (WAIT) before it is acknowledged.
    redis_min_replicas: int = setting("ORCHESTRATOR_REDIS_MIN_REPLICAS", 0, "min_replicas")
    cors_origins: tuple[str, ...] = setting("ORCHESTRATOR_CORS_ORIGINS", (), "cors_origins")
    rate_limit_tasks: int = per_minute("ORCHESTRATOR_RATE_LIMIT_TASKS", 10)
    rate_limit_reads: int = per_minute("ORCHESTRATOR_RATE_LIMIT_READS", 600)
    rate_limit_agent_ops: int = per_minute("ORCHESTRATOR_RATE_LIMIT_AGENT_OPS", 600)
    rate_limit_events: int = per_minute("ORCHESTRATOR_RATE_LIMIT_EVENTS", 20)
    rate_limit_approvals: int = per_minute("ORCHESTRATOR_RATE_LIMIT_APPROVALS", 5)
    rate_limit_stats: int = per_minute("ORCHESTRATOR_RATE_LIMIT_STATS", 30)
    rate_limit_default: int = per_minute("ORCHESTRATOR_RATE_LIMIT_DEFAULT", 60)
    rate_limit_auth_failures: int = per_minute("ORCHESTRATOR_RATE_LIMIT_AUTH_FAILURES", 20)
    rate_limit_exempt_principals: frozenset[str] = setting(
        "ORCHESTRATOR_RATE_LIMIT_EXEMPT", frozenset(), "exempt_principals"
    )
    rate_limit_exempt_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        "ORCHESTRATOR_RATE_LIMIT_EXEMPT", (), "exempt_networks"
    )
    # Default: 0 hops, 1 on Render (RENDER=true: its one proxy). SPEC.md says 1 in any
    # production, but trusted with no proxy in front, X-Forwarded-For is the client's
    # to write (config_parsing.trusted_proxies; README's variables table).
    trusted_proxies: int = setting("ORCHESTRATOR_TRUSTED_PROXIES", 0, "trusted_proxies")
    log_level: str = setting("LOG_LEVEL", "INFO", "choice", choices=LOG_LEVELS, fold="upper")
    # Default: console in development (people read it), json elsewhere (machines do).
    log_format: str = setting("LOG_FORMAT", "json", "log_format", choices=LOG_FORMATS)
    # At most 25 s: gunicorn kills a worker silent for 30 s, which would turn the promised
    # 503 into a dropped connection.
    health_check_timeout: float = setting("HEALTH_CHECK_TIMEOUT", 5.0, "number", low=0.1, high=25)
    queue_prefix: str = setting("ORCHESTRATOR_QUEUE_PREFIX", "orchestrator", "queue_prefix")
    task_ttl: int = setting("ORCHESTRATOR_TASK_TTL", 86400, "integer", minimum=1)
    approval_timeout: int = setting("ORCHESTRATOR_APPROVAL_TIMEOUT", 86400, "integer", minimum=1)
    approval_history_ttl: int = setting(
        "ORCHESTRATOR_APPROVAL_HISTORY_TTL", 2592000, "integer", minimum=1
    )
    max_approval_history: int = setting(
        "ORCHESTRATOR_MAX_APPROVAL_HISTORY", 1000, "integer", minimum=1
    )
    jwt_expires: int = setting("ORCHESTRATOR_JWT_EXPIRES", 3600, "integer", minimum=1)
    lease_seconds: int = setting("ORCHESTRATOR_LEASE_SECONDS", 300, "integer", minimum=1)
    event_stream_maxlen: int = setting(
        "ORCHESTRATOR_EVENT_STREAM_MAXLEN", 100000, "integer", minimum=1
    )
    max_body_bytes: int = setting("ORCHESTRATOR_MAX_BODY_BYTES", 1048576, "integer", minimum=1)
    sentry_dsn: str = setting("SENTRY_DSN", "", "text", secret=True)
    sentry_traces_sample_rate: float = setting(
        "SENTRY_TRACES_SAMPLE_RATE", 0.1, "number", low=0, high=1
    )
    # Render sets RENDER_GIT_COMMIT on every deploy: a release name for free.
    release: str = setting("RELEASE", "", "release")
    routes: Mapping[str, str] = setting(
        "ORCHESTRATOR_ROUTING_RULES", dict(DEFAULT_ROUTES), "routes"
    )
    hitl_priorities: frozenset[str] = setting(
        "ORCHESTRATOR_HITL_PRIORITIES", DEFAULT_GATED_PRIORITIES, "subset", choices=PRIORITIES
    )
    hitl_task_types: frozenset[str] = setting(
        "ORCHESTRATOR_HITL_TASK_TYPES", DEFAULT_GATED_TYPES, "subset", choices=tuple(DEFAULT_ROUTES)
    )
    hitl_ungated_environments: frozenset[str] = setting(
        "ORCHESTRATOR_HITL_UNGATED_ENVIRONMENTS", DEFAULT_UNGATED_ENVIRONMENTS, "environment_names"
    )
    approver_role: str = setting("ORCHESTRATOR_APPROVER_ROLE", "agent", "choice", choices=ROLES)
    # Rules (inline JSON or @file) with the ORCHESTRATOR_GROUP_<NAME> groups they name.
    approval_policy: ApprovalPolicy = setting(
        "ORCHESTRATOR_APPROVAL_POLICY", ApprovalPolicy(), "approval_policy"
    )
    # Percent of Redis' maxmemory above which creates are refused, so the memory left
    # lets agents claim, complete and let terminal tasks expire.
    redis_memory_high_watermark: float = setting(
        "ORCHESTRATOR_REDIS_MEMORY_HIGH_WATERMARK", 90.0, "number", low=1, high=100
    )
    agent_concurrency: Mapping[str, int] = setting(
        "ORCHESTRATOR_AGENT_CONCURRENCY", {}, "agent_caps"
    )
    metrics_token: str = setting("ORCHESTRATOR_METRICS_TOKEN", "", "text", secret=True)
    # Default: false in production (/metrics then needs the token), true elsewhere.
    metrics_public: bool = setting("ORCHESTRATOR_METRICS_PUBLIC", True, "metrics_public")
    # Webhooks: a delivery is retried until this many seconds after it was first due.
    webhook_max_age: int = setting("ORCHESTRATOR_WEBHOOK_MAX_AGE", 86400, "integer", minimum=1)
    webhook_allow_private: bool = setting(
        "ORCHESTRATOR_WEBHOOK_ALLOW_PRIVATE", False, "allow_private"
    )
    # Seconds between attempts, the last repeated: about 5 s, 30 s, 2 min, 10 min, 30 min,
    # 1 h, then every 2 h (jitter is added per attempt).
    webhook_backoff: tuple[float, ...] = setting(
        "ORCHESTRATOR_WEBHOOK_BACKOFF", (5, 30, 120, 600, 1800, 3600, 7200), "backoff"
    )
    # How long a deliverer may hold an attempt or a stream entry before another takes it
    # over (it must exceed the 5 s request timeout).
    webhook_reclaim_seconds: int = setting(
        "ORCHESTRATOR_WEBHOOK_RECLAIM_SECONDS", 60, "integer", minimum=1
    )
    # Encrypts stored webhook secrets; empty = derived from ORCHESTRATOR_JWT_SECRET.
    webhook_secret_key: str = setting("ORCHESTRATOR_WEBHOOK_SECRET_KEY", "", "text", secret=True)
    public_url: str = setting("ORCHESTRATOR_PUBLIC_URL", "", "public_url")

    @property
    def is_production(self) -> bool:
        """ENVIRONMENT=production: the strict checks apply."""
        return self.environment == "production"

    @property
    def uses_memory_redis(self) -> bool:
        """REDIS_URL=memory://: the in-process fakeredis demo mode."""
        return self.redis_url.startswith("memory://")

    @property
    def agents(self) -> tuple[str, ...]:
        """Every agent some task type routes to, sorted."""
        return tuple(sorted(set(self.routes.values())))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse and validate the environment; raises ConfigError on the first bad value."""
        from app.config_parsing import SettingsParser

        return SettingsParser(os.environ if environ is None else environ).settings()


def variables() -> tuple[str, ...]:
    """Every variable Settings reads (`<NAME>` stands for a family of variables)."""
    names = [f.metadata["env"] for f in dataclasses.fields(Settings)]
    return (*dict.fromkeys(names), "ORCHESTRATOR_API_KEY_<NAME>", "ORCHESTRATOR_GROUP_<NAME>")
