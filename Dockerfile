# syntax=docker/dockerfile:1
# canary-responder container image.
#   docker build -t canary-responder:0.1.0 .
# Stage 1 builds the wheel (and the wheels of its dependencies, so the runtime stage needs no compiler and no
# network for anything that would have to be built); stage 2 is python:3.11-slim with only those wheels installed.
# tests/packaging/test_wheel.py does what this file does, without a container engine.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY responder ./responder
RUN python -m pip wheel --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ARG UID=10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# Install from the built wheels only (--no-index: nothing else is fetched), then drop pip's own files.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels canary-responder \
    && groupadd --system --gid ${UID} canary-responder \
    && useradd --system --uid ${UID} --gid ${UID} --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin canary-responder \
    && install -d -o ${UID} -g ${UID} -m 0750 /var/lib/canary-responder \
    && install -d -m 0755 /etc/canary-responder
# Numeric, so that Kubernetes' runAsNonRoot can verify it (the chart runs with runAsUser 10001 too).
USER 10001:10001
WORKDIR /var/lib/canary-responder
EXPOSE 8080
ENTRYPOINT ["canary-responder"]
CMD ["serve", "--config", "/etc/canary-responder/config.yaml"]
