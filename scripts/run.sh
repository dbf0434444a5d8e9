#!/usr/bin/env bash
# Run the Orchestrator API locally with gunicorn: `make run` (or `bash scripts/run.sh`).
#
# 1. On first run, writes .env (chmod 600) with a fresh JWT secret and API keys.
# 2. Loads .env; variables already set in the environment win over it.
# 3. Redis: $REDIS_URL if set; else a private redis-server on a free port with its data
#    in .run/redis/; else the in-process fake (memory://, one worker, data lost on exit).
# 4. Runs gunicorn in the foreground. Ctrl-C stops gunicorn and the redis-server this
#    script started.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
RUN_DIR="$ROOT/.run"
REDIS_DIR="$RUN_DIR/redis"

if [ -x .venv/bin/python ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
if [ -x .venv/bin/gunicorn ]; then GUNICORN="$ROOT/.venv/bin/gunicorn"; else GUNICORN=gunicorn; fi

say() { printf '%s\n' "$*"; }
if [ -t 2 ]; then YELLOW=$'\033[1;33m' RED=$'\033[1;31m' RESET=$'\033[0m'; else YELLOW="" RED="" RESET=""; fi
warn() { printf '%sWARNING:%s %s\n' "$YELLOW" "$RESET" "$*" >&2; }
die() { printf '%sERROR:%s %s\n' "$RED" "$RESET" "$*" >&2; exit 1; }

[ -f wsgi.py ] || die "wsgi.py not found in $ROOT"
command -v "$GUNICORN" >/dev/null 2>&1 || die "gunicorn not found: run 'make run' (it creates .venv)"

gen_secret() { "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))'; }

# --- 1. .env ------------------------------------------------------------------------
if [ ! -f .env ]; then
    (
        umask 077
        cat >.env <<EOF
# Written by scripts/run.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ) for local development.
# Holds secrets: keep it out of git (it is in .gitignore). See .env.example for
# every other variable.
ENVIRONMENT=development
ORCHESTRATOR_JWT_SECRET=$(gen_secret)
# API keys, key:role. Principal ids: apikey:admin and apikey:agent. Use the second one
# to approve tasks the first created (the creator of a task cannot approve it).
ORCHESTRATOR_API_KEY_ADMIN=$(gen_secret):admin
ORCHESTRATOR_API_KEY_AGENT=$(gen_secret):agent
EOF
    )
    chmod 600 .env
    say "Created .env (chmod 600) with a fresh JWT secret and API keys."
fi

# Load .env, then restore whatever the caller had exported, so `PORT=9000 make run`
# or an exported REDIS_URL wins over the file.
caller_env=$(export -p | grep -vE '^declare -x (PWD|OLDPWD|SHLVL|_)(=|$)')
set -a
# shellcheck disable=SC1091
. ./.env
set +a
eval "$caller_env" 2>/dev/null || true
unset caller_env

append_env() { printf '%s=%s\n' "$1" "$2" >>.env; export "$1=$2"; }
if [ -z "${ORCHESTRATOR_JWT_SECRET:-}" ]; then
    append_env ORCHESTRATOR_JWT_SECRET "$(gen_secret)"
    say "Added a fresh ORCHESTRATOR_JWT_SECRET to .env."
fi
if [ -z "${ORCHESTRATOR_API_KEYS:-}" ] && ! env | grep -q '^ORCHESTRATOR_API_KEY_[A-Za-z0-9_]*=.'; then
    append_env ORCHESTRATOR_API_KEY_ADMIN "$(gen_secret):admin"
    say "Added an admin API key (ORCHESTRATOR_API_KEY_ADMIN) to .env."
fi

# --- helpers ------------------------------------------------------------------------
mask_url() { printf '%s' "$1" | sed -E 's#(://[^:/@]*:)[^@]*@#\1****@#'; }

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_busy() { # is something already listening on (or holding) this TCP port?
    "$PY" - "$1" <<'PYEOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
PYEOF
}

redis_pings() { # redis_pings PORT
    if command -v redis-cli >/dev/null 2>&1; then
        [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]
    else
        "$PY" -c 'import redis, sys; redis.Redis(port=int(sys.argv[1]), socket_timeout=1).ping()' \
            "$1" >/dev/null 2>&1
    fi
}

# --- cleanup: stop only what this script started ----------------------------------------
GUNICORN_PID=""
REDIS_PID=""
# shellcheck disable=SC2317  # invoked by trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    trap '' PIPE # stdout may be gone (closed terminal or pipe): still clean up
    if [ -n "$GUNICORN_PID" ] && kill -0 "$GUNICORN_PID" 2>/dev/null; then
        say "Stopping gunicorn (pid $GUNICORN_PID)..." 2>/dev/null || true
        kill -TERM "$GUNICORN_PID" 2>/dev/null || true
        wait "$GUNICORN_PID" 2>/dev/null || true
    fi
    if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
        say "Stopping redis-server (pid $REDIS_PID)..." 2>/dev/null || true
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        # `wait` only works for our own child; an adopted server is polled instead.
        wait "$REDIS_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.2; done
        rm -f "$REDIS_DIR/port"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

# --- 2. Redis -------------------------------------------------------------------------
start_private_redis() {
    mkdir -p "$REDIS_DIR"
    local pidfile="$REDIS_DIR/redis.pid" portfile="$REDIS_DIR/port" port pid

    # A redis-server left running by an earlier run (e.g. one killed with SIGKILL) owns
    # .run/redis: adopt it (and stop it on exit) rather than start a second server on
    # the same files.
    if [ -f "$pidfile" ] && [ -f "$portfile" ]; then
        pid=$(cat "$pidfile") port=$(cat "$portfile")
        if kill -0 "$pid" 2>/dev/null && redis_pings "$port"; then
            REDIS_PID=$pid
            export REDIS_URL="redis://127.0.0.1:$port/0"
            REDIS_DESC="private redis-server left running by an earlier run, adopted (pid $pid, data in .run/redis/): $REDIS_URL"
            return
        fi
    fi

    port=$(free_port)
    local args=(
        --bind 127.0.0.1 --port "$port" --protected-mode yes
        --daemonize no --dir "$REDIS_DIR"
        --pidfile "$pidfile" --logfile "$REDIS_DIR/redis.log"
        --save "" --appendonly yes --appendfsync everysec
    )
    # Own session: Ctrl-C reaches gunicorn first; this script stops Redis afterwards.
    if command -v setsid >/dev/null 2>&1; then
        setsid redis-server "${args[@]}" </dev/null &
    else
        redis-server "${args[@]}" </dev/null &
    fi
    REDIS_PID=$!
    printf '%s\n' "$port" >"$portfile"

    for _ in $(seq 1 50); do
        if redis_pings "$port"; then break; fi
        if ! kill -0 "$REDIS_PID" 2>/dev/null; then
            REDIS_PID=""
            tail -n 20 "$REDIS_DIR/redis.log" >&2 2>/dev/null || true
            die "redis-server exited at start-up (log: .run/redis/redis.log)"
        fi
        sleep 0.2
    done
    redis_pings "$port" || die "redis-server did not answer PING on port $port within 10 s (log: .run/redis/redis.log)"

    export REDIS_URL="redis://127.0.0.1:$port/0"
    REDIS_DESC="private redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') started by this script (pid $REDIS_PID, data in .run/redis/, kept between runs; 'make clean' wipes it): $REDIS_URL"
}

REDIS_DESC=""
if [ -n "${REDIS_URL:-}" ]; then
    case "$REDIS_URL" in
        memory://*) REDIS_DESC="in-process fake Redis (REDIS_URL=memory://): one worker, data lost on exit" ;;
        *) REDIS_DESC="REDIS_URL from .env or the environment: $(mask_url "$REDIS_URL")" ;;
    esac
elif command -v redis-server >/dev/null 2>&1; then
    start_private_redis
else
    export REDIS_URL="memory://"
    REDIS_DESC="in-process fake Redis (REDIS_URL=memory://): one worker, data lost on exit"
    warn "no REDIS_URL and no redis-server on PATH: using the in-process fake Redis (memory://)."
    warn "It runs ONE gunicorn worker and loses all data on exit. Install Redis (e.g."
    warn "'apt-get install redis-server' or 'brew install redis') or set REDIS_URL in .env."
fi
case "$REDIS_URL" in memory://*) export WEB_CONCURRENCY=1 ;; esac

# --- 3. port and banner ------------------------------------------------------------------
export PORT="${PORT:-8000}"
if port_busy "$PORT"; then
    die "port $PORT is already in use; stop whatever listens there or run: PORT=8001 make run"
fi

BASE="http://localhost:$PORT"
ADMIN_KEY=""
if [ -n "${ORCHESTRATOR_API_KEY_ADMIN:-}" ]; then ADMIN_KEY="${ORCHESTRATOR_API_KEY_ADMIN%:*}"; fi

say ""
say "================ Orchestrator API (ENVIRONMENT=${ENVIRONMENT:-development}) ================"
say "Redis : $REDIS_DESC"
say "API   : $BASE/"
say "Docs  : $BASE/docs   (ReDoc: $BASE/redoc, spec: $BASE/openapi.json)   UI: $BASE/ui/"
say "Health: $BASE/health   Metrics: $BASE/metrics"
say ""
if [ -n "$ADMIN_KEY" ]; then
    say "Authenticate with the admin API key from .env (ORCHESTRATOR_API_KEY_ADMIN):"
    say "  curl -H 'X-API-Key: $ADMIN_KEY' $BASE/tasks"
    say "or exchange it for a JWT and send that as a bearer token:"
    say "  curl -X POST -H 'X-API-Key: $ADMIN_KEY' -H 'Content-Type: application/json' -d '{}' $BASE/auth/token"
    say "  curl -H 'Authorization: Bearer <access_token>' $BASE/tasks"
else
    say "Authenticate with an API key from .env (ORCHESTRATOR_API_KEYS / ORCHESTRATOR_API_KEY_<NAME>):"
    say "  curl -H 'X-API-Key: <key>' $BASE/tasks"
    say "or get a JWT: curl -X POST -H 'X-API-Key: <key>' -H 'Content-Type: application/json' -d '{}' $BASE/auth/token"
fi
say "In Swagger UI ($BASE/docs) use 'Authorize' with the same key or token."
say "Press Ctrl-C to stop."
say "======================================================================================="
say ""

# --- 4. gunicorn ------------------------------------------------------------------------
"$GUNICORN" -c gunicorn.conf.py wsgi:app &
GUNICORN_PID=$!

# --- webhook deliverer: one beside gunicorn, stopped before the rest on exit -------------
# (not with memory://: a second process would have a fake Redis of its own)
DELIVERER_PID=""
case "$REDIS_URL" in
    memory://*) warn "webhooks are not delivered with memory:// (the deliverer needs a real Redis)" ;;
    *)
        "$PY" -m flask --app wsgi deliver &
        DELIVERER_PID=$!
        say "==> webhook deliverer running (pid $DELIVERER_PID): flask --app wsgi deliver"
        ;;
esac
# shellcheck disable=SC2317  # invoked by trap
stop_deliverer() {
    local rc=$?
    if [ -n "$DELIVERER_PID" ] && kill -0 "$DELIVERER_PID" 2>/dev/null; then
        kill -TERM "$DELIVERER_PID" 2>/dev/null || true
        wait "$DELIVERER_PID" 2>/dev/null || true
    fi
    (exit "$rc") # hand the exit status on to cleanup
    cleanup
}
trap stop_deliverer EXIT

# Say when it is actually serving (the banner above may have scrolled away by then).
for _ in $(seq 1 120); do
    kill -0 "$GUNICORN_PID" 2>/dev/null || break
    if "$PY" - "$PORT" <<'PYEOF' 2>/dev/null; then
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2)
except urllib.error.HTTPError:
    pass  # answering, even if unhealthy
PYEOF
        say "==> ready: $BASE/  (docs: $BASE/docs; Ctrl-C to stop)"
        break
    fi
    sleep 0.5
done

rc=0
wait "$GUNICORN_PID" || rc=$?
GUNICORN_PID=""
exit "$rc"
