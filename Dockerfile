# Serving image: no torch. Build: docker build -t vision . (GPU: --build-arg ORT_EXTRA=gpu
# on a CUDA base, e.g. --build-arg BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 with python3.11).
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG ORT_EXTRA=cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    BENTOML_HOME=/opt/bentoml BENTOML_DO_NOT_TRACK=true \
    VISION_MODEL_STORE=/app/model_store VISION_DATA_DIR=/data \
    OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-cache-dir ".[${ORT_EXTRA}]"
COPY model_store ./model_store
RUN vision import-models
RUN useradd --system --uid 10001 vision && mkdir -p /data && chown -R vision /opt/bentoml /data
USER vision
# The face gallery (SQLite) lives here: mount a volume, or set VISION_GALLERY_URL (PostgreSQL).
VOLUME /data
EXPOSE 3000 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:3000/readyz').status != 200)"
CMD ["vision", "serve"]
