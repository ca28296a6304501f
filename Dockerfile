# syntax=docker/dockerfile:1
#
# One image for both roles of source-config-cache:
#   service (default):  python -m service      (FastAPI replica: cache + events API)
#   watcher:            python -m watcher      (change-stream follower; run 2 for failover)
#   operator CLI:       scc inspect | resync | token show|reset | replicas
# Both roles serve /health/live on $SCC_HTTP_PORT, which the HEALTHCHECK below probes.
#
# Build:  docker build -t source-config-cache:local .
# Pin the base by digest in production: --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:...

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv with the pinned dependencies, then the project's own wheel ------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, from pyproject's exact pins, so a code change reuses this layer.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && /opt/venv/bin/pip install --require-virtualenv -r /tmp/requirements.txt

# The project itself as a wheel (hatchling, pinned in [build-system]); its dependencies
# are the ones just installed, which `pip check` confirms.
COPY shared ./shared
COPY watcher ./watcher
COPY service ./service
COPY scc ./scc
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-deps /wheels/*.whl \
 && /opt/venv/bin/pip check

# --- runtime: slim base + the virtualenv, non-root, read-only friendly --------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="source-config-cache" \
      org.opencontainers.image.description="Keeps every ingestion replica's in-memory copy of the MongoDB source_configs collection in step, through Redis pub/sub."

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SCC_HTTP_HOST=0.0.0.0 \
    SCC_HTTP_PORT=8080 \
    SCC_LOG_FORMAT=json

# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it; no home, no shell.
RUN groupadd --system --gid 10001 scc \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin scc

COPY --from=build /opt/venv /opt/venv
# The one-shot seeding script and its example configs (compose's `seed` service, demos).
COPY deploy/seed /app/seed
WORKDIR /app

USER 10001:10001
EXPOSE 8080

# Works for both roles: each serves /health/live on $SCC_HTTP_PORT as soon as it starts.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('SCC_HTTP_PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/health/live', timeout=2).status == 200 else 1)"]

CMD ["python", "-m", "service"]
