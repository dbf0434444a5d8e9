"""Property-based fuzzing of the live OpenAPI spec with schemathesis."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app import create_app
from tests.conftest import API_KEYS, base_env
from tests.support import LiveServer

pytestmark = pytest.mark.slow

SPEC = create_app(base_env("memory://")).test_client().get("/openapi.json").json
schema = schemathesis.openapi.from_dict(SPEC)
schema.config.generation.update(max_examples=30, deterministic=True, database="none")

@pytest.fixture(scope="module")
def fuzz_server(redis_server, tmp_path_factory):
    server = LiveServer(
        base_env(redis_server.url), 2, tmp_path_factory.mktemp("fuzz") / "gunicorn.log"
    ).start()
    yield server
    server.stop()


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_spec(case, fuzz_server):
    case.call_and_validate(base_url=fuzz_server.url, headers={"X-API-Key": API_KEYS["admin"]})
