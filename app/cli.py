"""`flask` commands for operators: tokens, secrets, API keys and the expiry sweep."""

from __future__ import annotations

import secrets

import click
from flask import Flask

from app.config import ROLES


@click.command("token")
@click.option("--sub", required=True, help="Principal the token names.")
@click.option("--role", type=click.Choice(ROLES), default="agent", show_default=True)
def token_command(sub: str, role: str) -> None:
    """Print a signed access token."""
    from app.auth import issue_token
    from app.extensions import get_settings

    click.echo(issue_token(sub, role, get_settings())["access_token"])


@click.command("gen-secret")
def gen_secret_command() -> None:
    """Print a fresh secret for ORCHESTRATOR_JWT_SECRET."""
    click.echo(secrets.token_urlsafe(48))


@click.command("gen-api-key")
@click.option("--name", default="agent", show_default=True)
@click.option("--role", type=click.Choice(ROLES), default="agent", show_default=True)
def gen_api_key_command(name: str, role: str) -> None:
    """Print an ORCHESTRATOR_API_KEY_<NAME> line with a fresh key."""
    click.echo(f"ORCHESTRATOR_API_KEY_{name.upper()}={secrets.token_urlsafe(32)}:{role}")


@click.command("sweep")
def sweep_command() -> None:
    """Apply due lease expiries, task expiries and approval timeouts (for cron)."""
    from app.extensions import services

    rounds, remaining = 0, 1
    while remaining and rounds < 1000:
        remaining = services().tasks.sweep()
        rounds += 1
    click.echo(f"swept in {rounds} round(s); {remaining} still due")


def init_app(app: Flask) -> None:
    """Register the commands on the app's CLI."""
    for command in (token_command, gen_secret_command, gen_api_key_command, sweep_command):
        app.cli.add_command(command)
