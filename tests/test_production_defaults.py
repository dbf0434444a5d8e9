"""What production defaults promise, against a live gunicorn: proxies, metrics, secrets."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import JWT_SECRET, mint_token

PRODUCTION = {"ENVIRONMENT": "production", "ORCHESTRATOR_RATE_LIMIT_STATS": "3"}


def stats_from(server, address: str) -> int:
    headers = {"X-Forwarded-For": address}
    return requests.get(f"{server.url}/stats", headers=headers, timeout=5).status_code


def test_production_without_a_proxy_ignores_x_forwarded_for(live_server):
    server = live_server(workers=1, **PRODUCTION)
    statuses = [stats_from(server, f"198.51.100.{n}") for n in range(5)]
    assert statuses == [200, 200, 200, 429, 429]  # one client, however it signs


def test_on_render_one_proxy_hop_is_trusted(live_server):
    server = live_server(workers=1, RENDER="true", **PRODUCTION)
    statuses = [stats_from(server, f"198.51.100.{n}") for n in range(5)]
    assert statuses == [200] * 5  # five clients behind Render's proxy


def test_production_metrics_need_a_token_unless_declared_public(live_server):
    closed = live_server(workers=1, **PRODUCTION)
    response = requests.get(f"{closed.url}/metrics", timeout=5)
    assert response.status_code == 403 and "ORCHESTRATOR_METRICS_TOKEN" in response.json()["detail"]
    public = live_server(workers=1, ORCHESTRATOR_METRICS_PUBLIC="true", **PRODUCTION)
    assert requests.get(f"{public.url}/metrics", timeout=5).status_code == 200


def test_a_weak_previous_secret_stops_production_start_up(live_server):
    with pytest.raises(RuntimeError, match="ORCHESTRATOR_JWT_SECRET_PREVIOUS"):
        live_server(workers=1, ORCHESTRATOR_JWT_SECRET_PREVIOUS="weak", **PRODUCTION)


def test_an_expired_token_signed_with_the_previous_secret_says_expired(live_server):
    previous = "previous-secret-" + "p" * 32
    server = live_server(workers=1, ORCHESTRATOR_JWT_SECRET_PREVIOUS=previous)
    for secret in (JWT_SECRET, previous):
        token = mint_token("jwt-user", "user", secret=secret, expires_in=-10)
        response = requests.get(
            f"{server.url}/tasks", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert response.status_code == 401 and response.json() == {"detail": "Token expired"}
    fresh = mint_token("jwt-user", "user", secret=previous)
    ok = requests.get(
        f"{server.url}/tasks", headers={"Authorization": f"Bearer {fresh}"}, timeout=5
    )
    assert ok.status_code == 200
