"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`."""

import sys

from app import create_app
from app.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    # One line naming the variable and the fix; exit code 3 makes gunicorn halt
    # ("worker failed to boot") instead of respawning workers forever.
    sys.stderr.write(f"orchestrator: configuration error: {error}\n")
    sys.exit(3)
