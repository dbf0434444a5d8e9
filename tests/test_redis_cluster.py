"""A smoke subset of the suite on a three-primary Redis Cluster, through redis+cluster://.

Real processes: three `redis-server --cluster-enabled yes` joined by `redis-cli --cluster
create` (harness.RedisClusterNodes) and the service under gunicorn. Every key of the
deployment carries the `{<prefix>}` hash tag, so all of them live on one node.
"""

from __future__ import annotations

import pytest
import redis
from redis.cluster import key_slot

from harness import RedisClusterNodes
from tests.helpers import Api, LiveClient, redis_keys

pytestmark = pytest.mark.slow

STATS_PER_MINUTE = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with RedisClusterNodes(tmp_path_factory.mktemp("cluster")) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def server(cluster, module_live_server):
    return module_live_server(
        workers=2, redis_url=cluster.url, ORCHESTRATOR_RATE_LIMIT_STATS=str(STATS_PER_MINUTE)
    )


@pytest.fixture
def api(server, keys):
    return Api(LiveClient(server.url), keys)


def test_create_claim_and_complete(api):
    task_id = api.create()["task_id"]
    assert api.task(task_id)["status"] == "assigned"
    claimed = api.claim("dev_agent")
    assert claimed["task_id"] == task_id and claimed["task"]["status"] == "in_progress"
    assert api.status(task_id, "completed")["task"]["status"] == "completed"


def test_approval_gate(api):
    created = api.create(priority="P0")
    assert created["task"]["status"] == "awaiting_approval"
    decided = api.approve(created["approval_id"])
    assert decided["approval"]["status"] == "approved"
    assert api.claim("dev_agent")["task_id"] == created["task_id"]  # queued once approved


def test_events_replay_in_order(api):
    task_id = api.create()["task_id"]
    assert api.claim("dev_agent")["task_id"] == task_id
    page = api.events(task_id=task_id, order="asc")
    assert [event["event_type"] for event in page["events"]] == [
        "task.created",
        "task.assigned",
        "task.in_progress",
    ]
    first = page["events"][0]["event_id"]
    after = api.events(task_id=task_id, after=first)["events"]
    assert [event["event_type"] for event in after] == ["task.assigned", "task.in_progress"]


def test_rate_limit_answers_429(api):
    for _ in range(STATS_PER_MINUTE):
        api.call("GET", "/stats", as_="admin")
    refused = api.call("GET", "/stats", as_="admin", expect=429)
    assert refused["detail"].startswith("Rate limit exceeded")


def test_every_key_lives_in_the_slot_of_the_hash_tag(api, server, cluster):
    api.create()
    keys = redis_keys(server.env)
    slot = key_slot(keys.tag.encode())
    found = {}
    for node in cluster.nodes:
        client = node.client()
        names = list(client.scan_iter(keys.tag + ":*", count=1000))
        if names:
            found[node.port] = names
    assert len(found) == 1, found  # one node holds the deployment
    (names,) = found.values()
    assert any(name.startswith(keys.name("rate_limits")) for name in names)  # the limiter's
    assert {key_slot(name.encode()) for name in names} == {slot}
    with pytest.raises(redis.ResponseError):  # it really is a cluster: other nodes refuse
        next(n for n in cluster.nodes if n.port not in found).client().get(keys.name("seq"))


def test_min_replicas_waits_on_the_node_that_holds_the_slot(cluster, make_app, keys):
    # These primaries have no replicas: WAIT on the slot's node confirms none, so 503.
    client = make_app(
        redis_url=cluster.url, ORCHESTRATOR_REDIS_MIN_REPLICAS="1", HEALTH_CHECK_TIMEOUT="0.5"
    ).test_client()
    refused = client.post("/tasks", json={"type": "bugfix"}, headers=keys["agent"])
    assert refused.status_code == 503
    assert refused.json["detail"].startswith("Redis replicas did not confirm the write")
    assert client.get("/health").status_code == 200  # reads do not wait
