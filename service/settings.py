"""One typed settings object, read from `VISION_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Environment defaults of the server processes (a variable already set wins). Parallelism comes
# from the worker processes and ONNX Runtime's own threads; a multi-threaded BLAS inside an HTTP
# worker only spins against them (a 10x16 @ 16x6400 product took 0.02 ms idle, ~200 ms under
# load: bench/masks.py).
PROCESS_ENV_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Settings(BaseSettings):
    """Service configuration. Every field is `VISION_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="VISION_", extra="ignore")

    host: str = "0.0.0.0"
    http_port: int = Field(default=3000, ge=1, le=65535)
    # Idle HTTP keep-alive connections close after this long. Longer than the idle timeout of
    # the load balancers and proxies in front (AWS ALB and ingress-nginx: 60 s), else they reuse
    # a connection the server is closing and answer 502; uvicorn's own default is 5 s.
    http_keep_alive_s: int = Field(default=75, ge=1)
    grpc_port: int = Field(default=50051, ge=0, le=65535)  # 0: no gRPC server
    grpc_tls_cert: str = ""  # PEM files; both set: the gRPC port speaks TLS
    grpc_tls_key: str = ""
    grpc_grace_s: float = Field(default=5.0, ge=0)  # calls in flight may finish on shutdown

    # Models to serve: BentoML tags (`name` or `name:version`), comma separated.
    # Empty: every vision model in the BentoML model store (latest version of each name).
    models: str = ""
    model_store: Path = PROJECT_ROOT / "model_store"
    # A package of model_store/ that fails validation stops `vision serve` (exit 2, one line
    # per problem); true: serve the others and list the bad ones in /v1/models with the reason.
    skip_invalid_models: bool = False
    # Set by `vision serve` for the server processes: the packages it skipped (JSON list of
    # {"name", "path", "reason"}); not a setting to write by hand.
    invalid_models: str = ""

    # "runner": the batching runner service (GPU, concurrency); "local": ONNX in each HTTP
    # worker, no batching and no inter-process hop (small CPU models, lowest latency).
    execution: Literal["runner", "local"] = "runner"

    # Adaptive batching in the model runner.
    batching: bool = True
    max_batch_size: int = Field(default=64, ge=2)
    max_latency_ms: int = Field(default=1000, ge=1)
    # Cap on how long a lone request waits for a batch to form (service/serving/bentoml_compat.py).
    max_batch_wait_ms: float = Field(default=2.0, ge=0)
    # Refuse at once (503 overloaded) a request whose predicted wait for its model passes
    # max_latency_ms, instead of letting it queue until the batcher gives up. It acts only on a
    # model known to be past capacity (the batcher refused a call, or one took twice the budget)
    # until its load recedes (service/serving/admission.py).
    fast_shed: bool = True

    # Execution: "auto" takes CUDA when onnxruntime offers it, else CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    http_workers: int = Field(default=2, ge=1)
    runner_workers: int = Field(default=1, ge=1)
    runner_threads: int = Field(default=0, ge=0)  # onnxruntime intra-op threads; 0 = all cores
    request_timeout_s: int = Field(default=60, ge=1)
    max_concurrency: int = Field(default=256, ge=1)  # in-flight requests per HTTP worker

    # Input limits.
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(default=40_000_000, ge=1)

    # Gallery writes (enrol, delete) need `Authorization: Bearer <api_key>` when it is set;
    # reads too when `api_key_reads`. Mount it from a Secret; never put it in a ConfigMap.
    api_key: str = ""
    api_key_reads: bool = False

    # Face recognition. The gallery is SQLite at <data_dir>/gallery.sqlite3 unless
    # `gallery_url` is a PostgreSQL DSN (several replicas sharing one gallery).
    data_dir: Path = PROJECT_ROOT / "var"
    gallery_url: str = ""
    # How often a worker pulls other workers' / replicas' gallery writes (also before searches).
    gallery_sync_s: float = Field(default=0.5, gt=0)
    # Search with an HNSW graph (usearch) at or above this many faces; 0 = always exact.
    gallery_ann_threshold: int = Field(default=200_000, ge=0)
    face_detector: str = ""  # model names; empty = the first model of the task
    face_embedder: str = ""
    max_metadata_bytes: int = Field(default=16 * 1024, ge=2)
    access_log: bool = False  # per-request access log lines of the gateway (costs CPU per request)

    def gallery_location(self) -> str:
        return self.gallery_url or str(self.data_dir / "gallery.sqlite3")

    def model_tags(self) -> list[str]:
        return [tag.strip() for tag in self.models.split(",") if tag.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
