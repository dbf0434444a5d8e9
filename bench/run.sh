#!/usr/bin/env bash
# make bench: load-test the service against a bare Flask+Redis ceiling, same machine, same run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk is missing; installing it (apt-get install -y wrk)" >&2
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; else sudo apt-get install -y wrk; fi
fi
command -v redis-server >/dev/null 2>&1 || { echo "redis-server is required (apt-get install -y redis-server)" >&2; exit 1; }
exec .venv/bin/python -m bench.run "$@"
