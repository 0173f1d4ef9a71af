"""The `vision_*` Prometheus metrics (API.md). Created after the worker starts, so they land in
BentoML's multiprocess directory and `/metrics` merges every worker."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
COUNT_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 300)
STAGES = ("decode", "preprocess", "infer", "postprocess")


class Metrics:
    def __init__(self) -> None:
        self.stage = Histogram(
            "vision_stage_duration_seconds",
            "Time per pipeline stage and model",
            ["model", "stage"],
            buckets=STAGE_BUCKETS,
        )
        self.images = Counter(
            "vision_images_total", "Images processed, by outcome", ["model", "outcome"]
        )
        self.rejected = Counter(
            "vision_rejected_inputs_total", "Requests rejected as bad input, by reason", ["reason"]
        )
        self.detections = Histogram(
            "vision_detections_per_image",
            "Objects returned per image",
            ["model"],
            buckets=COUNT_BUCKETS,
        )
        self.model_info = Gauge(
            "vision_model_info",
            "Served models (value 1)",
            ["model", "version", "task", "provider"],
            multiprocess_mode="max",
        )

        # Every worker sets these from its own index after each pull of the change feed; all
        # workers follow the same store, so the most recent value is the gallery's.
        self.gallery_faces = Gauge(
            "vision_gallery_faces", "Faces in the gallery", multiprocess_mode="mostrecent"
        )
        self.gallery_subjects = Gauge(
            "vision_gallery_subjects", "Subjects in the gallery", multiprocess_mode="mostrecent"
        )

        self.grpc_requests = Counter(
            "vision_grpc_requests_total", "gRPC calls by method and status code", ["method", "code"]
        )
        self.grpc_duration = Histogram(
            "vision_grpc_request_duration_seconds",
            "gRPC unary call duration by method",
            ["method"],
            buckets=STAGE_BUCKETS,
        )

    def served(self, model: str, seconds: dict[str, float], count: int | None) -> None:
        """One image served: its stage times, the `ok` outcome and (detectors) its count."""
        for stage in STAGES:
            if stage in seconds:
                self.stage.labels(model=model, stage=stage).observe(seconds[stage])
        self.images.labels(model=model, outcome="ok").inc()
        if count is not None:
            self.detections.labels(model=model).observe(count)

    def outcome(self, model: str, outcome: str) -> None:
        """An image that was not served: rejected, overloaded, cancelled or error."""
        self.images.labels(model=model, outcome=outcome).inc()

    def grpc_call(self, method: str, code: str, seconds: float | None) -> None:
        self.grpc_requests.labels(method=method, code=code).inc()
        if seconds is not None:
            self.grpc_duration.labels(method=method).observe(seconds)

    def gallery_size(self, faces: int, subjects: int) -> None:
        self.gallery_faces.set(faces)
        self.gallery_subjects.set(subjects)
