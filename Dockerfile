# Orchestrator API image: gunicorn + Flask, configured entirely by environment variables.
#   docker build -t morningai-orchestrator-api .
#   docker run --rm -p 8000:8000 --env-file .env -e REDIS_URL=redis://host.docker.internal:6379/0 \
#       morningai-orchestrator-api
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

USER app

EXPOSE 8000

# No curl in the slim image: probe /health with the standard library. A 503 (Redis
# unreachable) raises, so the container is reported unhealthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT:-8000}/health', timeout=8)" || exit 1

CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
