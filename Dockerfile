# syntax=docker/dockerfile:1
# The serving image: the service with the bundled models, no torch, run as a non-root user.
#
#   docker build -t vision .                                   # GPU (CUDA runtime, onnxruntime-gpu)
#   docker build -t vision:cpu --build-arg BASE=debian:bookworm-slim --build-arg ORT_EXTRA=cpu .
#   docker run -p 3000:3000 -p 50051:50051 vision [--gpus all]
#
# BASE is any Debian or Ubuntu image (Python 3.11+ comes from its packages). Behind a TLS proxy,
# put the proxy's CA certificate(s) (*.crt, PEM) in docker/ca-certificates/ before building:
# they are trusted by apt and pip during the build (and at run time). buildah/podman can mount
# one instead: -v /path/ca.crt:/usr/local/share/ca-certificates/extra-ca.crt:ro.
# Every setting is an environment variable (VISION_*, see README "Configuration").
ARG BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

FROM ${BASE} AS build
ARG ORT_EXTRA=gpu
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    BENTOML_HOME=/opt/bentoml BENTOML_DO_NOT_TRACK=true VISION_MODEL_STORE=/app/model_store
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/extra/
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY model_store ./model_store
# The serving install only (the `cpu` or `gpu` ONNX Runtime extra; no training extras), then
# the bundled models imported into the image's BentoML store.
RUN /opt/venv/bin/pip install "setuptools>=69" wheel \
    && /opt/venv/bin/pip install --no-build-isolation ".[${ORT_EXTRA}]" \
    && /opt/venv/bin/vision import-models \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    BENTOML_HOME=/opt/bentoml BENTOML_DO_NOT_TRACK=true \
    VISION_MODEL_STORE=/app/model_store VISION_DATA_DIR=/data \
    VISION_HTTP_PORT=3000 VISION_GRPC_PORT=50051 \
    OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/extra/
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && (userdel -r ubuntu 2>/dev/null || true) \
    && useradd --system --uid 10001 --gid 0 --home-dir /app --shell /usr/sbin/nologin vision \
    && mkdir -p /data \
    && chown 10001:0 /data && chmod 0770 /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=10001:0 /opt/bentoml /opt/bentoml
COPY --from=build /app /app
WORKDIR /app
USER 10001
# The face gallery (SQLite) lives here: mount a volume, or set VISION_GALLERY_URL (PostgreSQL).
VOLUME ["/data"]
EXPOSE 3000 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; port = os.environ.get('VISION_HTTP_PORT', '3000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=2).status != 200)"]
CMD ["vision", "serve"]
