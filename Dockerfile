# Orchestrator API image: gunicorn + Flask, configured entirely by environment variables.
#   docker build -t morningai-orchestrator-api .
#   docker run --rm -p 8000:8000 --env-file .env \
#       --add-host=host.docker.internal:host-gateway \
#       -e REDIS_URL=redis://host.docker.internal:6379/0 morningai-orchestrator-api
# --add-host makes host.docker.internal work on Linux Docker Engine too (Docker Desktop
# defines it already). Redis must listen on an address the container can reach: on Linux
# not 127.0.0.1 but e.g. the docker0 gateway (`redis-server --bind 127.0.0.1 172.17.0.1
# --requirepass SECRET`, then REDIS_URL=redis://:SECRET@host.docker.internal:6379/0).
# `make image-test` builds this file unmodified and runs it (scripts/image-test.sh).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

# Unprivileged user; the code stays owned by root, so the service cannot rewrite itself.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home \
       --shell /usr/sbin/nologin app

WORKDIR /srv/app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install --no-compile -r requirements.txt

COPY . .

# Numeric, so a runtime (Kubernetes runAsNonRoot) can tell it is not root without
# reading the image's /etc/passwd: uid and gid of the `app` user created above.
USER 10001:10001

EXPOSE 8000

# No curl in the slim image: probe /health with the standard library. A 503 (Redis
# unreachable) or no answer raises, so the check fails and the container turns unhealthy.
# Exec form (no shell), so the port comes from the environment inside Python.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % (os.environ.get('PORT') or '8000'), timeout=8)"]

CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
