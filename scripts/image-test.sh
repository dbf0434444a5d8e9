#!/usr/bin/env bash
# Build the real image from the unmodified Dockerfile and prove it runs (`make image-test`).
#
# Needs root, podman and runc, redis-server, and (only when the base image is missing)
# debootstrap; on Debian: apt-get install podman runc debootstrap redis-server.
# No container registry is needed: when the Dockerfile's base (python:3.11-slim) is not in
# local storage, a stand-in is made from Debian's own packages (debootstrap bookworm, whose
# python3 is 3.11) and tagged with that exact name, so `FROM` resolves to it. It is kept,
# so later runs skip that step.
#
#   scripts/image-test.sh          build, run, check; prints each check and the image size
#   scripts/image-test.sh --probe  exit 0 when podman can run containers here, else say why
#
# Environment: IMAGE (default morningai-orchestrator-api), DEBIAN_MIRROR (default: the first
# Debian mirror in this machine's apt sources), KEEP_IMAGE=0 to remove the built image.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

IMAGE_REPO=${IMAGE:-morningai-orchestrator-api}
IMAGE_REF="$IMAGE_REPO:image-test"
BASE=$(awk 'toupper($1) == "FROM" { print $2; exit }' Dockerfile)
STANDIN_SUITE=bookworm # Debian 12: python3 is 3.11, as in python:3.11-slim
STANDIN_LABEL=org.morningai.image-test.stand-in
GRACEFUL_TIMEOUT=$(sed -n 's/^graceful_timeout *= *\([0-9]*\).*/\1/p' gunicorn.conf.py)
GRACEFUL_TIMEOUT=${GRACEFUL_TIMEOUT:-30}

passed=0
failed=0
started=$(date +%s)
WORK=$(mktemp -d /tmp/image-test.XXXXXX)
CONTAINER="image-test-$$"
REDIS_PID=""

say() { printf 'image-test: %s\n' "$*"; }
pass() {
    passed=$((passed + 1))
    printf 'PASS  %s\n' "$*"
}
fail() {
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$*"
}
die() {
    printf 'image-test: error: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    set +e
    if [ -n "${PODMAN_READY:-}" ]; then
        podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1
        podman rm -f -t 0 "$CONTAINER-probe" >/dev/null 2>&1
        if [ "${KEEP_IMAGE:-1}" = 0 ]; then podman rmi -f "$IMAGE_REF" >/dev/null 2>&1; fi
    fi
    if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null; fi
    # The stand-in's root file system may still be mounted into if debootstrap failed.
    for mount in proc sys dev/pts dev; do umount "$WORK/rootfs/$mount" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- podman, configured for this kind of machine -------------------------------------
# Without CAP_SYS_RESOURCE podman's default rlimits are refused, and crun refuses a
# hybrid cgroup layout: a private CONTAINERS_CONF sets both (the machine's is untouched).
setup_podman() {
    [ "$(id -u)" -eq 0 ] || {
        echo "not root (podman runs containers here as root)"
        return 1
    }
    command -v podman >/dev/null 2>&1 || {
        echo "podman is not installed (apt-get install podman runc)"
        return 1
    }
    command -v runc >/dev/null 2>&1 || {
        echo "runc is not installed (apt-get install runc)"
        return 1
    }
    # Podman's defaults (1048576 open files, the host's process limit) are refused; these
    # are enough for the test, capped at this shell's own hard limits.
    local nofile=20000 nproc=32768 hard
    hard=$(ulimit -Hn)
    [ "$hard" != unlimited ] && [ "$hard" -lt "$nofile" ] && nofile=$hard
    hard=$(ulimit -Hu)
    [ "$hard" != unlimited ] && [ "$hard" -lt "$nproc" ] && nproc=$hard
    cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
EOF
    export CONTAINERS_CONF="$WORK/containers.conf"
    PODMAN_READY=1
}

# A container from a root file system of /bin/true and its libraries: no image needed.
probe() {
    local reason
    setup_podman >"$WORK/setup.out" || {
        echo "podman cannot run containers here: $(cat "$WORK/setup.out")"
        return 1
    }
    local rootfs="$WORK/probe-rootfs" lib
    mkdir -p "$rootfs"
    cp "$(type -P true)" "$rootfs/true"
    for lib in $(ldd "$(type -P true)" | grep -o '/[^ ]*'); do
        mkdir -p "$rootfs$(dirname "$lib")"
        cp -L "$lib" "$rootfs$lib"
    done
    if ! reason=$(podman run --rm --name "$CONTAINER-probe" --network none --rootfs "$rootfs" /true 2>&1); then
        echo "podman cannot run containers here: $(printf '%s' "$reason" | tail -n 1)"
        return 1
    fi
    echo "podman can run containers here ($(podman --version), runtime runc)"
}

# --- the stand-in base image ----------------------------------------------------------
# The first Debian archive in this machine's apt sources (one-line or deb822 format), so
# no mirror address is written into the repository.
debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local files=() uri
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || return 1
    uri=$(awk '
        /^[ \t]*#/ { next }
        /^deb[ \t]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; break } }
        /^URIs:/ { for (i = 2; i <= NF; i++) print $i }
    ' "${files[@]}" | grep -v -e security -e '-updates' | grep -m1 -i debian) || return 1
    echo "${uri%/}"
}

build_standin() {
    command -v debootstrap >/dev/null 2>&1 || die "$BASE is missing and debootstrap is not installed (apt-get install debootstrap)"
    local mirror rootfs="$WORK/rootfs"
    mirror=$(debian_mirror) || die "no Debian mirror in /etc/apt/sources*; set DEBIAN_MIRROR=http://<mirror>/debian"
    say "building a stand-in for $BASE: debootstrap $STANDIN_SUITE from $mirror"
    # python3-pip's build tools are only Recommends, which debootstrap does not install:
    # like python:3.11-slim, the stand-in has no compiler.
    debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates,passwd \
        "$STANDIN_SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 || {
        tail -n 20 "$WORK/debootstrap.log" >&2
        die "debootstrap failed"
    }
    # What python:3.11-slim has that Debian's python3 lacks: `python` and `pip` on PATH
    # and a pip allowed to install into the system Python (no PEP 668 marker).
    ln -sf python3 "$rootfs/usr/bin/python"
    [ -e "$rootfs/usr/bin/pip" ] || ln -s pip3 "$rootfs/usr/bin/pip"
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    # Outbound TLS may be intercepted by a local CA: the certificates this machine added
    # (update-ca-certificates' local directory) go into the stand-in only, so pip in the
    # build trusts what the host trusts. The project's Dockerfile is not touched.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        mkdir -p "$rootfs/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null
        say "stand-in trusts this machine's local CA certificates: $(cd /usr/local/share/ca-certificates && echo *.crt)"
    fi
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
    tar -C "$rootfs" --numeric-owner -cf - . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change "LABEL $STANDIN_LABEL=debootstrap-$STANDIN_SUITE" \
        --change 'CMD ["python3"]' \
        --quiet - "docker.io/library/$BASE" >/dev/null
    rm -rf "$rootfs"
}

# --- helpers ----------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

http_status() { # URL -> HTTP status, or 000 when nothing answers
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$1" 2>/dev/null || true
}

healthcheck() { # runs the image's HEALTHCHECK command now: healthy (exit 0) or unhealthy
    if podman healthcheck run "$CONTAINER" >"$WORK/healthcheck.out" 2>&1; then
        echo healthy
    else
        echo unhealthy
    fi
}

health_status() {
    podman inspect --format '{{.State.Healthcheck.Status}}' "$CONTAINER" 2>/dev/null || true
}

# --- main -------------------------------------------------------------------------------
if [ "${1:-}" = --probe ]; then
    probe
    exit
fi

setup_podman >"$WORK/setup.out" || die "$(cat "$WORK/setup.out")"
command -v redis-server >/dev/null 2>&1 || die "redis-server is not installed (apt-get install redis-server)"
command -v curl >/dev/null 2>&1 || die "curl is not installed (apt-get install curl)"

# 1. the base image: the real one if present, else the stand-in
if podman image exists "$BASE"; then
    kind=$(podman image inspect --format "{{index .Labels \"$STANDIN_LABEL\"}}" "$BASE")
    say "base $BASE: ${kind:+stand-in ($kind), }already in local storage"
else
    t0=$(date +%s)
    build_standin
    say "base $BASE: stand-in built in $(($(date +%s) - t0)) s"
fi

# 2. the image, from the unmodified Dockerfile. --format docker keeps HEALTHCHECK (the OCI
# image format has no field for it); --pull=never: the base is local, no registry needed.
t0=$(date +%s)
previous=$(podman image inspect --format '{{.Id}}' "$IMAGE_REF" 2>/dev/null || true)
say "building $IMAGE_REF from Dockerfile"
if ! podman build --format docker --pull=never --network host -t "$IMAGE_REF" . >"$WORK/build.log" 2>&1; then
    tail -n 30 "$WORK/build.log"
    die "podman build failed"
fi
say "image built in $(($(date +%s) - t0)) s"
# The previous build this script tagged is now untagged: remove it rather than let each
# run leave one behind (its layers stay while the new image shares them).
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE_REF")" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
fi

# 3. run it against a private Redis on loopback (host networking: the container reaches
# 127.0.0.1 of the host); never the Redis a developer may have on 6379.
redis_port=$(free_port)
app_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$WORK/redis.log" &
REDIS_PID=$!
for _ in $(seq 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done
# --health-interval=disable: no systemd timer (there may be no systemd; podman's complaint
# about that goes to run.err); the checks below run the image's own HEALTHCHECK command
# with `podman healthcheck run` instead.
podman run -d --name "$CONTAINER" --network host --health-interval=disable \
    -e PORT="$app_port" \
    -e REDIS_URL="redis://127.0.0.1:$redis_port/0" \
    -e ORCHESTRATOR_JWT_SECRET="image-test-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" \
    -e ENVIRONMENT=production \
    -e HEALTH_CHECK_TIMEOUT=2 \
    -e WEB_CONCURRENCY=2 \
    "$IMAGE_REF" >/dev/null 2>"$WORK/run.err" || {
    cat "$WORK/run.err"
    die "podman run failed"
}
say "container $CONTAINER: gunicorn on 127.0.0.1:$app_port, Redis on 127.0.0.1:$redis_port"

status=000
for _ in $(seq 60); do
    status=$(http_status "http://127.0.0.1:$app_port/health")
    [ "$status" = 200 ] && break
    [ "$(podman inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] || break
    sleep 1
done

# --- the checks ----------------------------------------------------------------------------
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE_REF")
uid=$(podman exec "$CONTAINER" sh -c "awk '/^Uid:/ { print \$2 }' /proc/1/status" 2>/dev/null || echo "?")
if [[ "$user" =~ ^[0-9]+(:[0-9]+)?$ ]] && [ "${user%%:*}" != 0 ] && [ "$uid" = "${user%%:*}" ]; then
    pass "runs as non-root numeric user: USER $user, gunicorn (pid 1) has uid $uid"
else
    fail "non-root numeric user: USER '$user', pid 1 uid '$uid'"
fi

if [ "$status" = 200 ]; then
    pass "GET /health answers 200"
else
    fail "GET /health answered $status"
    podman logs "$CONTAINER" 2>&1 | tail -n 30
fi

hc=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE_REF" 2>/dev/null || true)
[ -n "$hc" ] && [ "$hc" != null ] || hc=$(podman image inspect --format '{{json .Healthcheck}}' "$IMAGE_REF" 2>/dev/null || true)
result=$(healthcheck)
if [ "$result" = healthy ]; then
    pass "HEALTHCHECK reports healthy (podman healthcheck run) with Redis up"
else
    fail "HEALTHCHECK with Redis up: '$result' (healthcheck in the image: $hc)"
    tail -n 5 "$WORK/healthcheck.out"
fi

# Failures inside the start period do not count: wait it out, then stop Redis. The
# container turns unhealthy after --retries failures in a row.
start_period=$(podman image inspect --format '{{.Config.Healthcheck.StartPeriod.Seconds}}' "$IMAGE_REF" 2>/dev/null || echo 0)
retries=$(podman image inspect --format '{{.Config.Healthcheck.Retries}}' "$IMAGE_REF" 2>/dev/null || echo 3)
started_at=$(podman inspect --format '{{.State.StartedAt.Unix}}' "$CONTAINER")
wait_s=$((started_at + ${start_period%.*} + 1 - $(date +%s)))
[ "$wait_s" -gt 0 ] && say "waiting ${wait_s} s for the HEALTHCHECK start period (${start_period%.*} s) to end" && sleep "$wait_s"
kill "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
REDIS_PID=""
results=()
for _ in $(seq $((retries + 2))); do
    results+=("$(healthcheck)")
    [ "$(health_status)" = unhealthy ] && break
done
if [ "${results[-1]}" = unhealthy ] && [ "$(health_status)" = unhealthy ]; then
    pass "HEALTHCHECK reports unhealthy once Redis stops: runs ${results[*]}, container status unhealthy"
else
    fail "HEALTHCHECK after Redis stopped: runs ${results[*]}, container status '$(health_status)'"
    tail -n 5 "$WORK/healthcheck.out"
fi

t0=$(date +%s)
podman stop -t $((GRACEFUL_TIMEOUT + 15)) "$CONTAINER" >/dev/null 2>"$WORK/stop.err" || cat "$WORK/stop.err"
took=$(($(date +%s) - t0))
code=$(podman inspect --format '{{.State.ExitCode}}' "$CONTAINER")
logs=$(podman logs "$CONTAINER" 2>&1)
if [ "$code" = 0 ] && [ "$took" -lt "$GRACEFUL_TIMEOUT" ] &&
    grep -q 'Handling signal: term' <<<"$logs" && grep -q 'Shutting down: Master' <<<"$logs" &&
    ! grep -q -E 'Traceback|WORKER TIMEOUT|SIGKILL' <<<"$logs"; then
    pass "podman stop: gunicorn shut down cleanly in ${took} s (graceful timeout ${GRACEFUL_TIMEOUT} s), exit code 0"
else
    fail "podman stop: exit code $code after ${took} s (graceful timeout ${GRACEFUL_TIMEOUT} s); last log lines:"
    tail -n 15 <<<"$logs"
fi

# shellcheck disable=SC2016 # expanded inside the container
found=$(podman run --rm --network none --no-healthcheck --entrypoint sh "$IMAGE_REF" -c '
    for tool in gcc cc c++ g++ clang make ld as; do command -v "$tool"; done
    ls /usr/bin/*-gcc* /usr/local/bin/*gcc* 2>/dev/null' || true)
if [ -z "$found" ]; then
    pass "no compilers in the image (gcc, cc, c++, clang, make, ld, as)"
else
    fail "compilers in the image: $(echo "$found" | tr '\n' ' ')"
fi

found=$(podman run --rm --network none --no-healthcheck --entrypoint sh "$IMAGE_REF" -c \
    'find / -xdev -name .git 2>/dev/null; ls -A /srv/app' || true)
if ! grep -q '\.git$' <<<"$found"; then
    pass "no .git in the image; /srv/app holds: $(grep -v '^/' <<<"$found" | tr '\n' ' ')"
else
    fail ".git in the image: $(grep '\.git$' <<<"$found" | tr '\n' ' ')"
fi

size=$(podman image inspect --format '{{.Size}}' "$IMAGE_REF")
base_size=$(podman image inspect --format '{{.Size}}' "$BASE")
say "image size: $((size / 1000000)) MB ($IMAGE_REF; the base $BASE is $((base_size / 1000000)) MB)"
say "took $(($(date +%s) - started)) s"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
