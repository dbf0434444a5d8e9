"""`flask` commands for operators: tokens, secrets, API keys, the sweep, key migration,
reindexing, the deliverer."""

from __future__ import annotations

import secrets

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from app.domain.ids import KEY_NAME
from app.domain.model import ROLES


def _key_name(_ctx, _param, value: str) -> str:
    # The same rule Settings applies to ORCHESTRATOR_API_KEY_<NAME>: never print a line
    # the service would then refuse to start with.
    if not KEY_NAME.fullmatch(value):
        raise click.BadParameter("use letters, digits and _ only")
    return value


def _token_sub(_ctx, _param, value: str) -> str:
    # The API refuses tokens whose sub is empty or longer than 200 characters.
    if not 0 < len(value) <= 200:
        raise click.BadParameter("use 1-200 characters")
    return value


@click.command("token")
@click.option(
    "--sub",
    required=True,
    callback=_token_sub,
    help="Principal the token names (1-200 characters).",
)
@click.option("--role", type=click.Choice(ROLES), default="agent", show_default=True)
@with_appcontext
def token_command(sub: str, role: str) -> None:
    """Print a signed access token."""
    from app.auth import issue_token
    from app.services import current_settings

    click.echo(issue_token(sub, role, current_settings())["access_token"])


@click.command("gen-secret")
def gen_secret_command() -> None:
    """Print a fresh secret for ORCHESTRATOR_JWT_SECRET."""
    click.echo(secrets.token_urlsafe(48))


@click.command("gen-api-key")
@click.option(
    "--name",
    default="agent",
    show_default=True,
    callback=_key_name,
    help="Principal becomes apikey:<name lowercased>.",
)
@click.option("--role", type=click.Choice(ROLES), default="agent", show_default=True)
def gen_api_key_command(name: str, role: str) -> None:
    """Print an ORCHESTRATOR_API_KEY_<NAME> line with a fresh key."""
    click.echo(f"ORCHESTRATOR_API_KEY_{name.upper()}={secrets.token_urlsafe(32)}:{role}")


@click.command("sweep")
@with_appcontext
def sweep_command() -> None:
    """Apply due lease expiries, run times, task expiries and approval timeouts (for cron)."""
    import redis

    from app.redis_client import redis_location
    from app.services import current_settings, services

    where = redis_location(current_settings().redis_url)
    rounds, remaining = 0, 1
    try:
        while remaining and rounds < 1000:
            remaining = services().tasks.sweep()
            rounds += 1
    except redis.RedisError as error:
        raise _unavailable(where, error) from None
    click.echo(f"swept Redis at {where} in {rounds} round(s); {remaining} still due")


def _unavailable(where: str, error: Exception) -> click.ClickException:
    # REDIS_URL comes from the environment or .env; `make run`'s private Redis is in
    # neither (its banner prints the URL), so say which Redis this is.
    return click.ClickException(
        f"Redis at {where} unavailable ({type(error).__name__}); check REDIS_URL "
        "(for make run's private Redis, use the REDIS_URL its banner prints)"
    )


@click.command("reindex")
@with_appcontext
def reindex_command() -> None:
    """Rebuild the task and event indexes from the stored tasks and events (after upgrading).

    Files every stored task in its status, type and agent index and rebuilds each task's
    event index from the event stream, then deletes the keys of the layout before the
    indexes. Safe while the service runs (one batch at a time, each atomic) and safe to
    run again; run one at a time.
    """
    import redis

    from app.domain.reindex import reindex
    from app.redis_client import redis_location
    from app.services import current_settings, redis_client

    settings = current_settings()
    where = redis_location(settings.redis_url)
    try:
        done = reindex(redis_client(current_app), settings)
    except redis.RedisError as error:
        raise _unavailable(where, error) from None
    click.echo(
        f"reindexed Redis at {where}: {done.tasks} task(s), {done.events} event(s); "
        f"removed {done.removed} key(s) of the pre-index layout"
    )


# Commands that need no settings: they work on a fresh clone, before .env exists.
SETTINGS_FREE = (gen_secret_command, gen_api_key_command)


def settings_free_requested(argv: list[str]) -> bool:
    """Whether this `flask ...` command line asks for a command that needs no settings."""
    names = {command.name for command in SETTINGS_FREE}
    return any(arg in names for arg in argv[1:])


def settings_free_app() -> Flask:
    """An app with only the settings-free commands, for when the settings are incomplete."""
    app = Flask("orchestrator-cli")
    for command in SETTINGS_FREE:
        app.cli.add_command(command)
    return app


@click.command("migrate-keys")
@with_appcontext
def migrate_keys_command() -> None:
    """Move keys written before the {<prefix>} hash tag to their new names (service stopped)."""
    import redis

    from app.domain.keys import migrate_unbraced
    from app.redis_client import redis_location
    from app.services import current_settings, redis_client

    settings = current_settings()
    try:
        renamed = migrate_unbraced(redis_client(current_app), settings.queue_prefix)
    except redis.RedisError as error:
        raise _unavailable(redis_location(settings.redis_url), error) from None
    click.echo(f"renamed {renamed} key(s)")


@click.command("deliver")
@with_appcontext
def deliver_command() -> None:
    """Deliver webhooks until stopped (run any number of these beside the API)."""
    from app.delivery.worker import run
    from app.services import current_settings, services

    run(services().deliveries, current_settings())


def init_app(app: Flask, _settings=None) -> None:
    """Register the commands on the app's CLI."""
    for command in (
        token_command,
        gen_secret_command,
        gen_api_key_command,
        sweep_command,
        migrate_keys_command,
        reindex_command,
        deliver_command,
    ):
        app.cli.add_command(command)
