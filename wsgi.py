"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app` (and `flask --app wsgi ...`)."""

import sys

from app import cli, create_app
from app.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    if cli.settings_free_requested(sys.argv):
        # `flask --app wsgi gen-secret` makes the very secret that is missing.
        app = cli.settings_free_app()
    else:
        # One line naming the variable and the fix; exit code 3 makes gunicorn halt
        # ("worker failed to boot") instead of respawning workers forever.
        sys.stderr.write(f"orchestrator: configuration error: {error}\n")
        sys.exit(3)
