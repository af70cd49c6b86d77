# The ftrollout operator image: `ftrollout run`, as uid 65532, runtime dependencies only.
#
#   docker build -t REGISTRY/ftrollout:0.1.0 .   (REGISTRY: yours; no image is published)
#
# tests/unit/test_dockerfile.py lints this file with hadolint and replays the build stage's RUN
# steps in a clean venv (no container engine needed), so keep them plain shell.

# ---- build: the wheel, installed with its runtime dependencies into a venv ------------------
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY crds/ crds/
COPY operator/ operator/
# The operator face only (`[operator]`): no plugin (rich), no dev tooling (pytest, ruff, mypy,
# kubectl, hadolint, the local cluster and demo of ftrollout-dev) in the image.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/ftrollout \
 && /opt/ftrollout/bin/pip install --no-compile "$(ls /wheels/ftrollout-*.whl)[operator]" \
 && /opt/ftrollout/bin/ftrollout --help > /dev/null

# ---- runtime ----------------------------------------------------------------------------
FROM python:3.11.13-slim-bookworm
LABEL org.opencontainers.image.title="ftrollout" \
      org.opencontainers.image.description="Kubernetes operator: canary a Python service onto a free-threaded CPython image" \
      org.opencontainers.image.licenses="Apache-2.0"
# A named user for uid/gid 65532, so tools that look the uid up (getpass) do not fail.
RUN groupadd --gid 65532 ftrollout \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ftrollout
COPY --from=build /opt/ftrollout /opt/ftrollout
ENV PATH=/opt/ftrollout/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
# 8080: GET /healthz (--health-port); 9102: GET /metrics (--metrics-port).
EXPOSE 8080 9102
ENTRYPOINT ["ftrollout", "run"]
