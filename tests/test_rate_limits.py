"""Rate limits: budgets by what a call does, per principal or client IP, shared via Redis."""

from __future__ import annotations

import random
import time
import uuid

import pytest
import requests

from harness import LiveServer
from tests.conftest import HEADERS
from tests.helpers import PLAIN_TASK, redis_keys

RATE_VARIABLES = ("TASKS", "READS", "AGENT_OPS", "EVENTS", "APPROVALS", "STATS", "DEFAULT")
USER = HEADERS["user"]
AGENT = HEADERS["agent"]
UNKNOWN_APPROVAL = "apr-00000000-0000-4000-8000-000000000000"

# (variable that governs it, method, path, headers, status when allowed)
ENDPOINTS = [
    ("READS", "GET", "/tasks", USER, 200),
    ("READS", "GET", "/events", USER, 200),
    ("READS", "GET", "/approvals/pending", USER, 200),
    ("AGENT_OPS", "POST", "/tasks/claim", AGENT, 422),
    ("EVENTS", "POST", "/events/publish", AGENT, 422),
    ("APPROVALS", "POST", f"/approvals/{UNKNOWN_APPROVAL}/approve", AGENT, 404),
    ("STATS", "GET", "/stats", {}, 200),
    ("DEFAULT", "GET", "/", {}, 200),
    ("DEFAULT", "POST", "/auth/token", AGENT, 200),
    ("DEFAULT", "GET", "/openapi.json", {}, 200),
    ("DEFAULT", "GET", "/docs", {}, 200),
]


def limits(**overrides: str) -> dict[str, str]:
    """Every ORCHESTRATOR_RATE_LIMIT_* at 100000 but the ones given (by short name)."""
    env = {f"ORCHESTRATOR_RATE_LIMIT_{name}": "100000" for name in RATE_VARIABLES}
    env.update({f"ORCHESTRATOR_RATE_LIMIT_{name}": value for name, value in overrides.items()})
    return env


def assert_refused(response, limit: int) -> None:
    """A 429 as the service answers it: {"detail"}, Retry-After and the X-RateLimit-* set."""
    assert response.status_code == 429
    body = response.json() if callable(response.json) else response.json  # requests or Flask
    assert body == {"detail": f"Rate limit exceeded: {limit} per 60 s"}
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Reset"]) > time.time()


# --- in process, on the session Redis ----------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "method", "path", "headers", "ok"),
    ENDPOINTS,
    ids=[f"{v}-{p}" for v, _, p, *_ in ENDPOINTS],
)
def test_each_variable_governs_its_own_budget(make_app, variable, method, path, headers, ok):
    client = make_app(**limits(**{variable: "2"})).test_client()
    answers = [client.open(path, method=method, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [ok, ok, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert_refused(answers[2], 2)
    # Every endpoint on another budget still answers, under its own variable's limit.
    for other, o_method, o_path, o_headers, o_ok in ENDPOINTS:
        if other == variable:
            continue
        response = client.open(o_path, method=o_method, headers=o_headers)
        assert response.status_code == o_ok, o_path
        assert response.headers["X-RateLimit-Limit"] == ("2" if other == variable else "100000")


def test_allowed_responses_carry_the_headers_but_no_retry_after(make_app):
    client = make_app(**limits(READS="5")).test_client()
    response = client.get("/tasks", headers=USER)
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit"] == "5"
    assert response.headers["X-RateLimit-Remaining"] == "4"
    assert 0 < int(response.headers["X-RateLimit-Reset"]) - time.time() <= 61
    assert "Retry-After" not in response.headers


def test_limits_are_per_principal_then_per_ip(make_app):
    client = make_app(**limits(READS="1")).test_client()
    assert client.get("/tasks", headers=USER).status_code == 200
    assert_refused(client.get("/tasks", headers=USER), 1)
    # Another principal, and the anonymous client IP, each have their own window.
    assert client.get("/tasks", headers=AGENT).status_code == 200
    assert client.get("/tasks").status_code == 401
    assert_refused(client.get("/tasks"), 1)
    # Bad credentials count against the client IP, not against the key they name.
    assert_refused(client.get("/tasks", headers={"X-API-Key": "wrong-key-0123456789"}), 1)


def test_health_is_never_limited(make_app):
    client = make_app(**{name: "1" for name in limits()}).test_client()
    for _ in range(5):
        response = client.get("/health")
        assert response.status_code == 200 and response.json["status"] == "healthy"
        assert "X-RateLimit-Limit" not in response.headers


def test_redis_down_is_503_not_500(make_app, own_redis):
    client = make_app(redis_url=own_redis.url).test_client()
    assert client.get("/tasks", headers=USER).status_code == 200
    own_redis.stop()
    for response in (client.get("/tasks", headers=USER), client.get("/stats")):
        assert response.status_code == 503
        assert response.json == {"detail": "Redis unavailable"}
        assert "X-RateLimit-Remaining" not in response.headers  # no window was read
    health = client.get("/health")
    assert health.status_code == 503 and health.json["redis"] == "disconnected"


# --- live: three gunicorn workers, one Redis ---------------------------------------------

LIMIT = 3


def start(module_live_server, **env: str) -> LiveServer:
    server = module_live_server(workers=3, **limits(READS=str(LIMIT), STATS=str(LIMIT)), **env)
    assert len(server.worker_pids()) == 3
    return server


@pytest.fixture(scope="module")
def direct(module_live_server):
    """Clients reach gunicorn directly: no trusted proxy hop; apikey:ops is exempt."""
    return start(
        module_live_server,
        ORCHESTRATOR_TRUSTED_PROXIES="0",
        ORCHESTRATOR_RATE_LIMIT_EXEMPT="apikey:ops",
    )


@pytest.fixture(scope="module")
def proxied(module_live_server):
    """One trusted proxy hop (Render); loopback itself is an exempt network."""
    return start(
        module_live_server,
        ORCHESTRATOR_TRUSTED_PROXIES="1",
        ORCHESTRATOR_RATE_LIMIT_EXEMPT="127.0.0.1/32",
    )


@pytest.fixture
def fresh(redis_server):
    """Empty every window of a live server, so tests sharing one don't share counts."""

    def clear(server: LiveServer) -> LiveServer:
        client = redis_server.client()
        for key in client.scan_iter(redis_keys(server.env).name("rate_limits") + "*"):
            client.delete(key)
        return server

    return clear


def get(server: LiveServer, path: str, headers: dict | None = None) -> requests.Response:
    """One request on its own connection, so consecutive ones land on different workers."""
    return requests.get(
        server.url + path, timeout=5, headers={"Connection": "close", **(headers or {})}
    )


def random_ip() -> str:
    return ".".join(str(random.randint(1, 254)) for _ in range(4))


@pytest.mark.parametrize(("path", "headers"), [("/stats", {}), ("/tasks", USER)])
def test_limit_holds_across_workers(direct, fresh, path, headers):
    server = fresh(direct)
    answers = [get(server, path, headers) for _ in range(LIMIT + 1)]
    assert [a.status_code for a in answers] == [200] * LIMIT + [429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:LIMIT]] == ["2", "1", "0"]
    assert_refused(answers[-1], LIMIT)
    assert answers[-1].headers["Content-Type"] == "application/json"


def test_rotating_forwarded_for_without_trusted_proxy_is_still_limited(direct, fresh):
    server = fresh(direct)
    answers = [get(server, "/stats", {"X-Forwarded-For": random_ip()}) for _ in range(LIMIT + 1)]
    assert [a.status_code for a in answers] == [200] * LIMIT + [429]


def test_only_the_entry_the_proxy_appended_counts(proxied, fresh):
    server = fresh(proxied)
    # The client forges the left part; the proxy (modelled here) appends the real 10.0.0.1.
    forged = [
        get(server, "/stats", {"X-Forwarded-For": f"{random_ip()}, 10.0.0.1"})
        for _ in range(LIMIT + 1)
    ]
    assert [a.status_code for a in forged] == [200] * LIMIT + [429]
    assert_refused(forged[-1], LIMIT)
    other = get(server, "/stats", {"X-Forwarded-For": f"{random_ip()}, 10.0.0.2"})
    assert other.status_code == 200 and other.headers["X-RateLimit-Remaining"] == "2"


def test_health_is_never_limited_live(direct, fresh):
    server = fresh(direct)
    for _ in range(LIMIT * 3):
        response = get(server, "/health")
        assert response.status_code == 200 and response.json()["status"] == "healthy"
        assert "X-RateLimit-Limit" not in response.headers


def test_exempt_principal_is_never_limited(direct, fresh):
    server = fresh(direct)
    for _ in range(LIMIT * 2):
        response = get(server, "/tasks", HEADERS["ops"])
        assert response.status_code == 200 and response.json()["success"] is True
        assert "X-RateLimit-Limit" not in response.headers
    # The same key's neighbours are not exempt.
    assert [get(server, "/tasks", AGENT).status_code for _ in range(LIMIT + 1)][-1] == 429


def test_exempt_network_is_never_limited(proxied, fresh):
    server = fresh(proxied)
    for path in ("/stats", "/tasks"):
        for _ in range(LIMIT * 2):
            response = get(server, path, USER if path == "/tasks" else {})
            assert response.status_code == 200
            assert "X-RateLimit-Limit" not in response.headers


def test_the_limiter_costs_one_redis_round_trip(make_app, own_redis):
    client = make_app(redis_url=own_redis.url).test_client()
    client.get("/")  # loads the script once
    redis = own_redis.client()
    redis.config_resetstat()
    response = client.get("/")
    assert response.status_code == 200 and response.headers["X-RateLimit-Remaining"] == "99998"
    stats = redis.info("commandstats")
    # Stock flask-limiter runs a second script after the view to read the window.
    assert stats["cmdstat_evalsha"]["calls"] == 1


def test_a_hit_rides_on_the_operations_script_one_round_trip_in_all(make_app, own_redis):
    """GET /tasks/<id>: the limiter's slot and the read in one script call."""
    client = make_app(redis_url=own_redis.url, **limits(READS="5")).test_client()
    task_id = client.post("/tasks", json=PLAIN_TASK, headers=AGENT).json["task_id"]
    client.get(f"/tasks/{task_id}", headers=USER)  # loads the script once
    redis = own_redis.client()
    redis.config_resetstat()
    response = client.get(f"/tasks/{task_id}", headers=USER)
    assert response.status_code == 200 and response.json["task"]["task_id"] == task_id
    assert response.headers["X-RateLimit-Limit"] == "5"
    assert response.headers["X-RateLimit-Remaining"] == "3"
    stats = redis.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert stats["cmdstat_mget"]["calls"] == 1  # the limiter's read, inside that one call


def test_a_refused_request_changes_nothing_though_its_hit_rode_on_the_script(make_app, own_redis):
    app = make_app(redis_url=own_redis.url, **limits(TASKS="1"))
    client, redis, keys = app.test_client(), own_redis.client(), redis_keys(app)
    assert client.post("/tasks", json=PLAIN_TASK, headers=AGENT).status_code == 201
    before = (redis.get(keys.name("seq")), redis.xlen(keys.name("events")), redis.dbsize())
    assert_refused(client.post("/tasks", json=PLAIN_TASK, headers=AGENT), 1)
    after = (redis.get(keys.name("seq")), redis.xlen(keys.name("events")), redis.dbsize())
    assert after == before == ("1", 2, before[2])


def test_a_blocked_address_is_refused_alike_where_its_hit_rides(make_app, own_redis):
    """Over its failed-authentication limit, an address gets the same 429 with a valid
    key, whether the refusal comes from the limiter's own call (a garbage id: no script)
    or from the script the hit rode on (a well-formed id)."""
    client = make_app(redis_url=own_redis.url, ORCHESTRATOR_RATE_LIMIT_AUTH_FAILURES="2")
    client = client.test_client()
    guesses = [client.get("/tasks", headers={"X-API-Key": f"guess-{n:020d}"}) for n in range(3)]
    assert [r.status_code for r in guesses] == [401, 401, 429]
    riding = client.get(f"/tasks/{uuid.uuid4()}", headers=USER)
    alone = client.get("/tasks/not-a-task-id", headers=USER)
    for refused in (riding, alone):
        assert refused.status_code == 429 and refused.json == guesses[-1].json
        assert not [name for name in refused.headers.keys() if name.startswith("X-RateLimit")]
        assert int(refused.headers["Retry-After"]) > 0


# --- budgets split by what the call does ---------------------------------------------------


def test_the_defaults_fit_an_agent_at_work():
    from app.config import Settings

    settings = Settings.from_env({"ORCHESTRATOR_JWT_SECRET": "x" * 40})
    assert (settings.rate_limit_tasks, settings.rate_limit_reads) == (10, 600)
    assert settings.rate_limit_agent_ops == 600


def test_creates_reads_and_agent_operations_spend_separate_shared_budgets(make_app):
    client = make_app(**limits(TASKS="2", READS="3", AGENT_OPS="4")).test_client()

    def create():
        return client.post("/tasks", json={"type": "bugfix", "priority": "P3"}, headers=AGENT)

    first, second = create(), create()
    assert (first.status_code, second.status_code) == (201, 201)
    assert_refused(create(), 2)  # creating is out of budget ...

    # ... while claim, heartbeat, status and cancel share their own bucket of 4.
    claimed = client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=AGENT)
    task_id = claimed.json["task_id"]
    assert client.post(f"/tasks/{task_id}/heartbeat", headers=AGENT).status_code == 200
    other = second.json["task_id"] if first.json["task_id"] == task_id else first.json["task_id"]
    assert client.post(f"/tasks/{other}/cancel", headers=AGENT).status_code == 200
    done = client.patch(f"/tasks/{task_id}/status?status=completed", headers=AGENT)
    assert done.status_code == 200 and done.headers["X-RateLimit-Remaining"] == "0"
    assert_refused(client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=AGENT), 4)

    # Every GET of tasks, events and approvals draws on one read bucket of 3.
    reads = [
        client.get(f"/tasks/{task_id}", headers=AGENT),
        client.get("/events", headers=AGENT),
        client.get("/approvals/history", headers=AGENT),
    ]
    assert [r.status_code for r in reads] == [200, 200, 200]
    assert_refused(client.get("/tasks", headers=AGENT), 3)
    # Each principal has its own buckets.
    assert client.get("/tasks", headers=USER).status_code == 200


def test_openapi_names_the_budget_of_each_operation(client):
    paths = client.get("/openapi.json").json["paths"]
    assert (
        "ORCHESTRATOR_RATE_LIMIT_TASKS"
        in paths["/tasks"]["post"]["responses"]["429"]["description"]
    )
    for path, method in (("/tasks", "get"), ("/events", "get"), ("/approvals/pending", "get")):
        assert (
            "ORCHESTRATOR_RATE_LIMIT_READS"
            in (paths[path][method]["responses"]["429"]["description"])
        )
    for path in ("/tasks/claim", "/tasks/{task_id}/heartbeat", "/tasks/{task_id}/cancel"):
        assert (
            "ORCHESTRATOR_RATE_LIMIT_AGENT_OPS"
            in (paths[path]["post"]["responses"]["429"]["description"])
        )


def test_the_limit_holds_exactly_at_the_boundary(make_app, own_redis):
    client = make_app(redis_url=own_redis.url, **limits(READS="5")).test_client()
    answers = [client.get("/tasks", headers=USER) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["4", "3", "2", "1", "0", "0"]
    assert all(a.headers["X-RateLimit-Limit"] == "5" for a in answers)
    assert_refused(answers[-1], 5)


def counts(record: str) -> tuple[int, int]:
    """(previous window's count, this window's count) of a limit's one record."""
    _window, previous, current = (int(part) for part in record.split(":"))
    return previous, current


def test_the_refused_hit_is_not_counted(make_app, own_redis):
    client = make_app(redis_url=own_redis.url, **limits(READS="2")).test_client()
    for _ in range(10):
        client.get("/tasks", headers=USER)
    redis = own_redis.client()
    names = [name for name in redis.scan_iter("*") if "LIMITER" in name]
    assert len(names) == 1 and counts(redis.get(names[0]))[1] == 2


def test_the_state_per_principal_stays_constant_whatever_the_limit(own_redis):
    from limits import RateLimitItemPerDay
    from limits.strategies import SlidingWindowCounterRateLimiter

    from app.rate_storage import OneTripRedisStorage

    redis = own_redis.client()
    storage = OneTripRedisStorage("orchestrator+redis://", redis, key_prefix="{t}:rate_limits")
    limiter = SlidingWindowCounterRateLimiter(storage)
    # Per day: 5,000 hits never straddle two windows (per minute they could).
    item = RateLimitItemPerDay(100_000)
    assert all(limiter.hit(item, "principal:apikey:busy") for _ in range(5_000))
    names = list(redis.scan_iter("*"))
    assert len(names) == 1  # one record: this window's count and the previous one's
    assert counts(redis.get(names[0])) == (0, 5_000)
    assert redis.memory_usage(names[0]) < 200  # bytes, key name included
    assert limiter.get_window_stats(item, "principal:apikey:busy").remaining == 95_000


def test_the_window_rolls_over_into_a_weighted_previous_one(own_redis):
    from limits import RateLimitItemPerSecond
    from limits.strategies import SlidingWindowCounterRateLimiter

    from app.rate_storage import OneTripRedisStorage

    redis = own_redis.client()
    storage = OneTripRedisStorage("orchestrator+redis://", redis, key_prefix="{t}:rate_limits")
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = RateLimitItemPerSecond(10)
    time.sleep(1.05 - time.time() % 1)  # windows are aligned to whole seconds: start one
    assert [limiter.hit(item, "p") for _ in range(11)] == [True] * 10 + [False]
    time.sleep(1.0)  # early in the next window: the previous one still weighs ~95 %
    allowed = sum(limiter.hit(item, "p") for _ in range(10))
    assert 1 <= allowed < 10
    names = list(redis.scan_iter("*"))
    assert len(names) == 1  # one record, never more
    assert counts(redis.get(names[0])) == (10, allowed)
    time.sleep(2.1)  # two windows later nothing weighs any more
    assert [limiter.hit(item, "p") for _ in range(11)] == [True] * 10 + [False]
    assert len(list(redis.scan_iter("*"))) == 1
