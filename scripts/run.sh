#!/usr/bin/env bash
# Run the Orchestrator API locally with gunicorn: `make run` (or `bash scripts/run.sh`).
#
# 1. On first run, writes .env (chmod 600) with a fresh JWT secret and API keys. An
#    existing .env is never rewritten: what is missing is reported with the fix.
# 2. Loads .env; variables set (non-empty) in the environment win over it.
# 3. Redis: $REDIS_URL if set; else a private redis-server of this run, on REDIS_PORT
#    (default: a free port), with its data in .run/<PORT>/redis/; else the in-process
#    fake (memory://, one worker, data lost on exit).
# 4. Runs gunicorn in the foreground on BIND_HOST:PORT (default 127.0.0.1:8000) and
#    says "ready" once /health answers 200. Ctrl-C stops gunicorn and the redis-server
#    this run started, and nothing else: several runs on different ports coexist.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

if [ -x .venv/bin/python ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
if [ -x .venv/bin/gunicorn ]; then GUNICORN="$ROOT/.venv/bin/gunicorn"; else GUNICORN=gunicorn; fi

say() { printf '%s\n' "$*"; }
if [ -t 2 ]; then YELLOW=$'\033[1;33m' RED=$'\033[1;31m' RESET=$'\033[0m'; else YELLOW="" RED="" RESET=""; fi
warn() { printf '%sWARNING:%s %s\n' "$YELLOW" "$RESET" "$*" >&2; }
die() { printf '%sERROR:%s %s\n' "$RED" "$RESET" "$*" >&2; exit 1; }

[ -f wsgi.py ] || die "wsgi.py not found in $ROOT"
command -v "$GUNICORN" >/dev/null 2>&1 || die "gunicorn not found: run 'make run' (it creates .venv)"

gen_secret() { "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))'; }

# --- 1. .env: created once, never rewritten ---------------------------------------------
if [ ! -f .env ]; then
    (
        umask 077
        cat >.env <<EOF
# Written by scripts/run.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ) for local development.
# Holds secrets: keep it out of git (it is in .gitignore). See .env.example for
# every other variable. make run never changes this file again.
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

# Load .env, then restore whatever the caller exported with a value, so `PORT=9000 make
# run` or an exported REDIS_URL wins over the file. An empty exported variable does not:
# it would only blank a value the file holds (an empty secret cannot work anyway).
caller_env=$(export -p | grep -vE '^declare -x (PWD|OLDPWD|SHLVL|_)(=|$)' | grep -vE '^declare -x [A-Za-z_][A-Za-z0-9_]*(="")?$' || true)
set -a
# shellcheck disable=SC1091
. ./.env
set +a
eval "$caller_env" 2>/dev/null || true
unset caller_env

if [ -z "${ORCHESTRATOR_JWT_SECRET:-}" ]; then
    die "ORCHESTRATOR_JWT_SECRET is empty. make run does not edit an existing .env: add a line to it with
  printf 'ORCHESTRATOR_JWT_SECRET=%s\n' \"\$(.venv/bin/flask --app wsgi gen-secret)\" >> .env
or export ORCHESTRATOR_JWT_SECRET, or move .env away to get a fresh one."
fi
if [ -z "${ORCHESTRATOR_API_KEYS:-}" ] && ! env | grep -q '^ORCHESTRATOR_API_KEY_[A-Za-z0-9_]*=.'; then
    warn "no API key is configured (ORCHESTRATOR_API_KEYS / ORCHESTRATOR_API_KEY_<NAME>); add one to .env:"
    warn "  .venv/bin/flask --app wsgi gen-api-key --name admin --role admin >> .env"
fi

# --- 2. where to listen: checked before anything is started ------------------------------
valid_port() { [[ "$1" =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }
export PORT="${PORT:-8000}"
valid_port "$PORT" || die "PORT must be a TCP port number (1-65535), got '$PORT'"
PORT=$((10#$PORT))
BIND_HOST="${BIND_HOST:-127.0.0.1}"
if [ -n "${REDIS_PORT:-}" ]; then
    valid_port "$REDIS_PORT" || die "REDIS_PORT must be a TCP port number (1-65535), got '$REDIS_PORT'"
    REDIS_PORT=$((10#$REDIS_PORT))
fi

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
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
redis_pings() { # redis_pings PORT
    "$PY" -c 'import redis, sys; redis.Redis(port=int(sys.argv[1]), socket_timeout=1).ping()' \
        "$1" >/dev/null 2>&1
}
mask_url() { # every password as ****: the user info's (up to its last @), ?password=, ?sentinel_password=
    "$PY" - "$1" <<'PYEOF'
import re, sys
url = re.sub(r"([?&][^=&#]*password=)[^&#]*", r"\1****", sys.argv[1], flags=re.IGNORECASE)
scheme, sep, rest = url.partition("://")
if "@" in rest:
    user_info, _, rest = rest.rpartition("@")
    user, colon, _ = user_info.partition(":")
    rest = f"{user}:****@{rest}" if colon else f"****@{rest}"
print(f"{scheme}{sep}{rest}")
PYEOF
}

if port_busy "$PORT"; then
    die "port $PORT is already in use (another make run?); pick another: PORT=$((PORT + 1)) make run"
fi

# This run's own directory; the lock says a live run owns it, so two runs started at
# once on the same port cannot share it either.
RUN_DIR="$ROOT/.run/$PORT"
mkdir -p "$RUN_DIR"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$RUN_DIR/lock"
    flock -n 9 || die "another make run is starting on port $PORT; pick another: PORT=$((PORT + 1)) make run"
fi

# --- cleanup: stop only what this run started ---------------------------------------------
GUNICORN_PID=""
REDIS_PID=""
DELIVERER_PID=""
# shellcheck disable=SC2317  # invoked by trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    trap '' PIPE # stdout may be gone (closed terminal or pipe): still clean up
    # The webhook deliverer first: it reads the Redis stopped last.
    if [ -n "$DELIVERER_PID" ] && kill -0 "$DELIVERER_PID" 2>/dev/null; then
        kill -TERM "$DELIVERER_PID" 2>/dev/null || true
        wait "$DELIVERER_PID" 2>/dev/null || true
    fi
    if [ -n "$GUNICORN_PID" ] && kill -0 "$GUNICORN_PID" 2>/dev/null; then
        say "Stopping gunicorn (pid $GUNICORN_PID)..." 2>/dev/null || true
        kill -TERM "$GUNICORN_PID" 2>/dev/null || true
        wait "$GUNICORN_PID" 2>/dev/null || true
    fi
    if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
        say "Stopping redis-server (pid $REDIS_PID)..." 2>/dev/null || true
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

# --- 3. Redis -------------------------------------------------------------------------
start_private_redis() {
    local dir="$RUN_DIR/redis" port pid
    mkdir -p "$dir"
    # A redis-server still running on these files belongs to an earlier run that was
    # killed (SIGKILL): this run did not start it, so it neither uses nor stops it.
    if [ -f "$dir/redis.pid" ]; then
        pid=$(cat "$dir/redis.pid")
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            die "a redis-server (pid $pid) left by an earlier run still uses .run/$PORT/redis/; stop it (kill $pid) and run again"
        fi
        rm -f "$dir/redis.pid"
    fi
    port=${REDIS_PORT:-$(free_port)}
    if port_busy "$port"; then
        die "REDIS_PORT $port is already in use; pick another (REDIS_PORT=$((port + 1)) make run) or unset it for a free one"
    fi
    local args=(
        --bind 127.0.0.1 --port "$port" --protected-mode yes
        --daemonize no --dir "$dir"
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
        --save "" --appendonly yes --appendfsync everysec
    )
    # Own session: Ctrl-C reaches gunicorn first; this script stops Redis afterwards.
    if command -v setsid >/dev/null 2>&1; then
        setsid redis-server "${args[@]}" </dev/null &
    else
        redis-server "${args[@]}" </dev/null &
    fi
    REDIS_PID=$!
    for _ in $(seq 1 50); do
        if redis_pings "$port"; then break; fi
        if ! kill -0 "$REDIS_PID" 2>/dev/null; then
            REDIS_PID=""
            tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
            die "redis-server exited at start-up (log: .run/$PORT/redis/redis.log)"
        fi
        sleep 0.2
    done
    redis_pings "$port" || die "redis-server did not answer PING on port $port within 10 s (log: .run/$PORT/redis/redis.log)"
    export REDIS_URL="redis://127.0.0.1:$port/0"
    REDIS_DESC="private redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') started by this run (pid $REDIS_PID, data in .run/$PORT/redis/, kept between runs on this PORT; 'make clean' wipes it): $REDIS_URL"
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

# --- 4. banner and gunicorn -----------------------------------------------------------------
case "$BIND_HOST" in
    0.0.0.0 | "::" | "[::]") PROBE_HOST=127.0.0.1 ;;
    *) PROBE_HOST=$BIND_HOST ;;
esac
case "$PROBE_HOST" in *:*) BASE="http://[${PROBE_HOST#[}" BASE="${BASE%]}]:$PORT" ;; *) BASE="http://$PROBE_HOST:$PORT" ;; esac
ADMIN_KEY=""
if [ -n "${ORCHESTRATOR_API_KEY_ADMIN:-}" ]; then ADMIN_KEY="${ORCHESTRATOR_API_KEY_ADMIN%:*}"; fi

say ""
say "================ Orchestrator API (ENVIRONMENT=${ENVIRONMENT:-development}) ================"
say "Redis : $REDIS_DESC"
say "Listen: $BIND_HOST:$PORT (only this machine; BIND_HOST=0.0.0.0 make run listens on every interface)"
say "API   : $BASE/"
say "Docs  : $BASE/docs   (ReDoc: $BASE/redoc, spec: $BASE/openapi.json)   UI: $BASE/ui/"
say "Health: $BASE/health   Metrics: $BASE/metrics"
case "$REDIS_URL" in
    redis://127.0.0.1:*)
        if [ -n "$REDIS_PID" ]; then
            say "CLI   : flask reads .env, which does not name this run's Redis; for it, run e.g."
            say "        REDIS_URL=$REDIS_URL .venv/bin/flask --app wsgi sweep"
        fi
        ;;
esac
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

"$GUNICORN" -c gunicorn.conf.py --bind "$BIND_HOST:$PORT" wsgi:app &
GUNICORN_PID=$!

# --- webhook deliverer: one beside gunicorn, stopped first by cleanup on exit ------------
# (not with memory://: a second process would have a fake Redis of its own)
case "$REDIS_URL" in
    memory://*) warn "webhooks are not delivered with memory:// (the deliverer needs a real Redis)" ;;
    *)
        "$PY" -m flask --app wsgi deliver &
        DELIVERER_PID=$!
        say "==> webhook deliverer running (pid $DELIVERER_PID): flask --app wsgi deliver"
        ;;
esac

# Ready means /health answers 200; anything else is said as it is (the banner above may
# have scrolled away by then).
health() { # prints the HTTP status of /health and, when not 200, its detail
    "$PY" - "$BASE/health" <<'PYEOF' 2>/dev/null
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as response:
        print(response.status)
except urllib.error.HTTPError as error:
    try:
        detail = json.load(error).get("detail", "")
    except ValueError:
        detail = ""
    print(error.code, detail)
except OSError:
    print("down")
PYEOF
}
state="" unhealthy=0
for _ in $(seq 1 120); do
    kill -0 "$GUNICORN_PID" 2>/dev/null || break
    state=$(health || echo down)
    [ "$state" = "200" ] && break
    # Answering but unhealthy for 5 s: say so now rather than after a minute.
    case "$state" in down | "") ;; *) unhealthy=$((unhealthy + 1)) ;; esac
    [ "$unhealthy" -ge 10 ] && break
    sleep 0.5
done
if [ "$state" = "200" ]; then
    say "==> ready: $BASE/  (docs: $BASE/docs; Ctrl-C to stop)"
elif ! kill -0 "$GUNICORN_PID" 2>/dev/null; then
    : # gunicorn exited; its own lines above say why
elif [ "$state" = "down" ] || [ -z "$state" ]; then
    warn "==> NOT ready: nothing answers on $BASE/health after 60 s (gunicorn still starting?)"
else
    warn "==> NOT ready: $BASE/health answers ${state%% *}: ${state#* } ($REDIS_DESC)"
    warn "    Check that Redis is running and REDIS_URL is right; this run keeps serving and /health says when it recovers."
fi

rc=0
wait "$GUNICORN_PID" || rc=$?
GUNICORN_PID=""
exit "$rc"
