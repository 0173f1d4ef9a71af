"""Locust load test of the vision service: REST (HTTP port) and gRPC (`vision.v1`) users.

    locust -f load_tests/locustfile.py --host http://127.0.0.1:3000            # web UI
    locust -f load_tests/locustfile.py --host http://127.0.0.1:3000 --headless -u 20 -r 5 -t 60s
    python -m load_tests.run [--host URL]     # headless, step shape, report (see load_tests/run.py)

Traffic: a task per endpoint family, weighted like real traffic (classify 20, detect 12,
identify faces 10, segment 6, instances 6, enrol a face 1), on real photos of three sizes
(load_tests/images.py), from REST users (weight 3) and gRPC users (weight 1). Every answer is
checked: status and schema (load_tests/checks.py); a 503 `overloaded` (gRPC UNAVAILABLE with
`vision-error-code: overloaded`) is a failure reported under its own name, `<name> [503
overloaded]`, and its reason says whether it carried Retry-After. Endpoints whose models the
target does not serve (GET /v1/models at test start) are skipped, not failed.

Environment:
- LOADTEST_SHAPE: `step` to use the step shape (load_tests/shape.py; LOADTEST_STEP_USERS,
  LOADTEST_STEP_SECONDS, LOADTEST_MAX_USERS, LOADTEST_DURATION, LOADTEST_SPAWN_RATE);
  unset or `none`: Locust's -u/-r/-t.
- LOADTEST_GRPC_HOST: host:port of the gRPC server (default: the --host name, port 50051);
  LOADTEST_GRPC_TLS=1 for a TLS port.
- VISION_API_KEY: the key sent with enrolments (and the clean-up deletes) when set.
- LOADTEST_WAIT_MIN / LOADTEST_WAIT_MAX: think time between a user's requests in seconds
  (default 0.1 / 1.0); LOADTEST_SIZES: image sizes (default 320,640,1280).
- LOADTEST_RETRY_AFTER: `honour` (default): a user answered `overloaded` waits at least its
  Retry-After before its next request, as a well-behaved client does; `ignore`: it goes on at
  once (constant pressure, for overload runs).
- LOADTEST_CLEANUP=0 keeps the enrolled `loadtest-*` subjects (default: deleted at the end).
- LOADTEST_TALLY_FILE: where to write the JSON tally (status codes, Retry-After, p99 of
  admitted requests) when the test stops.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import HttpUser, LoadTestShape, User, between, constant, events, task
from locust.env import Environment
from locust.exception import RescheduleTaskImmediately

grpc_gevent.init_gevent()  # before any channel: gRPC's C core must yield to gevent

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `locust -f load_tests/locustfile.py` puts load_tests/ first
    sys.path.insert(0, str(ROOT))

from load_tests.checks import REQUIRED_TASKS, check_body, check_error, grpc_to_rest  # noqa: E402
from load_tests.images import SIZES, Sample, describe, face_samples, samples  # noqa: E402
from load_tests.shape import StepPlan  # noqa: E402
from load_tests.tally import Tally  # noqa: E402
from service.api.grpc.vision_v1 import vision_pb2, vision_pb2_grpc  # noqa: E402

log = logging.getLogger("loadtest")

API_KEY = os.environ.get("VISION_API_KEY", "")
SUBJECT_PREFIX = "loadtest-"
GRPC_TIMEOUT_S = 60.0
GRPC_MAX_MESSAGE = 32 * 1024 * 1024
IMAGE_SIZES = tuple(int(s) for s in os.environ.get("LOADTEST_SIZES", "").split(",") if s) or SIZES

TALLY = Tally()
_state_lock = threading.Lock()
_enroll_disabled = False  # set on a 401 when no VISION_API_KEY is given
_enrolled_subjects: set[str] = set()


def _wait_time() -> Callable[..., float]:
    """Think time, or the rest of the user's Retry-After back-off when that is longer."""
    low = float(os.environ.get("LOADTEST_WAIT_MIN", "0.1"))
    high = float(os.environ.get("LOADTEST_WAIT_MAX", "1.0"))
    think = constant(low) if high <= low else between(low, high)

    def wait(user: Any) -> float:
        backoff = getattr(user, "retry_at", 0.0) - time.monotonic()
        return max(float(think(user)), backoff)

    return wait


HONOUR_RETRY_AFTER = os.environ.get("LOADTEST_RETRY_AFTER", "honour") != "ignore"


def _back_off(user: Any, retry_after: str | None) -> None:
    """After an `overloaded` answer: the user's next request waits Retry-After seconds."""
    if not HONOUR_RETRY_AFTER or retry_after is None:
        return
    try:
        seconds = float(retry_after)
    except ValueError:
        return
    user.retry_at = time.monotonic() + seconds
    TALLY.record_backoff(seconds)


def _image() -> Sample:
    return random.choice(samples(IMAGE_SIZES))


def _face_image() -> Sample:
    return random.choice(face_samples(IMAGE_SIZES))


def needs(endpoint: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a task with the REST endpoint whose models it needs (skipped when not served)."""

    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        fn.vision_endpoint = endpoint  # type: ignore[attr-defined]
        return fn

    return mark


def _enrolment_allowed() -> bool:
    return not _enroll_disabled and bool(face_samples(IMAGE_SIZES))


def _enrolment() -> tuple[Sample, str]:
    """A face photo to enrol and its subject; the task is skipped when enrolment is off."""
    if not _enrolment_allowed():
        raise RescheduleTaskImmediately()
    image = _face_image()
    return image, SUBJECT_PREFIX + image.photo


def _disable_enrolment(reason: str) -> None:
    global _enroll_disabled
    with _state_lock:
        if not _enroll_disabled:
            _enroll_disabled = True
            log.warning("enrolment disabled for the rest of the run: %s", reason)
            TALLY.note(f"enrolment disabled: {reason}")


def _overload_reason(retry_after: str | None, ms: float) -> str:
    TALLY.record_overloaded(retry_after, ms)
    if retry_after is None:
        return "overloaded WITHOUT Retry-After"
    return f"overloaded, Retry-After {retry_after}"


# ---- REST ----


def _image_task(endpoint: str, weight: int, fields: dict[str, str] | None = None) -> Any:
    """A REST user's task (of `weight`) posting a sample image to an image route."""

    @task(weight)
    @needs(endpoint)
    def post(self: VisionRestUser) -> None:
        self._post(endpoint, _image(), fields)

    post.__name__ = endpoint.strip("/")
    return post


class VisionRestUser(HttpUser):
    """The REST API on the HTTP port, multipart uploads."""

    weight = 3
    wait_time = _wait_time()

    classify = _image_task("/classify", 20, {"top_k": "5"})
    detect = _image_task("/detect", 12)
    segment = _image_task("/segment", 6)
    instances = _image_task("/instances", 6)

    @task(10)
    @needs("/faces/identify")
    def identify_faces(self) -> None:
        image = _image()
        self._post("/faces/identify", image, {"top_k": "3"}, expect_face=image.has_face)

    @task(1)
    @needs("/faces/enroll")
    def enroll_face(self) -> None:
        image, subject = _enrolment()
        headers = {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}
        fields = {"subject": subject, "metadata": json.dumps({"source": "locust"})}
        self._post("/faces/enroll", image, fields, headers=headers, subject=subject)

    def _post(
        self,
        endpoint: str,
        image: Sample,
        fields: dict[str, str] | None = None,
        *,
        headers: dict[str, str] | None = None,
        subject: str | None = None,
        expect_face: bool = False,
    ) -> None:
        files = {"image": (f"{image.name}.jpg", image.data, "image/jpeg")}
        with self.client.post(
            endpoint,
            files=files,
            data=fields or {},
            headers=headers,
            name=endpoint,
            catch_response=True,
        ) as response:
            status = response.status_code
            TALLY.record("rest", str(status), float(response.request_meta["response_time"]))
            reason = self._verdict(endpoint, response, image, subject, expect_face)
            if reason is None:
                response.success()
                if subject is not None:
                    _enrolled_subjects.add(subject)
                return
            if status == 503 and reason.startswith("overloaded"):
                response.request_meta["name"] = f"{endpoint} [503 overloaded]"
                _back_off(self, response.headers.get("Retry-After"))
            response.failure(reason)

    @staticmethod
    def _verdict(
        endpoint: str,
        response: Any,
        image: Sample,
        subject: str | None,
        expect_face: bool,
    ) -> str | None:
        status = response.status_code
        if not status:
            return f"no answer: {type(response.error).__name__}"
        try:
            body = response.json()
        except ValueError:
            return f"HTTP {status}, body is not JSON"
        if status == 200:
            return check_body(
                endpoint, body, image.width, image.height, subject=subject, expect_face=expect_face
            )
        code = check_error(body)
        if code is None:
            return f"HTTP {status}, not the API's error format"
        if status == 503 and code == "overloaded":
            ms = float(response.request_meta["response_time"])
            return _overload_reason(response.headers.get("Retry-After"), ms)
        if status == 401 and endpoint == "/faces/enroll" and not API_KEY:
            _disable_enrolment("the target needs an API key; set VISION_API_KEY")
            return "HTTP 401 unauthorized (VISION_API_KEY not set)"
        return f"HTTP {status} {code}"


# ---- gRPC ----


class CheckFailed(Exception):
    """A gRPC answer that failed its checks (the message is the reason)."""


def grpc_target(host: str | None) -> str:
    """LOADTEST_GRPC_HOST, or the REST host's name with port 50051."""
    explicit = os.environ.get("LOADTEST_GRPC_HOST")
    if explicit:
        return explicit
    name = urllib.parse.urlparse(host or "").hostname or "127.0.0.1"
    return f"{name}:50051"


class VisionGrpcUser(User):
    """The typed gRPC API `vision.v1.VisionService` (service/api/grpc/vision_v1/vision.proto); every
    call is reported to Locust with request_type `grpc` and the RPC's name."""

    weight = 1
    wait_time = _wait_time()

    def on_start(self) -> None:
        options = [
            ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
            ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
        ]
        target = grpc_target(self.environment.host)
        if os.environ.get("LOADTEST_GRPC_TLS") == "1":
            credentials = grpc.ssl_channel_credentials()
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = vision_pb2_grpc.VisionServiceStub(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    @task(20)
    @needs("/classify")
    def classify(self) -> None:
        image = _image()
        self._call(
            "/classify", "Classify", vision_pb2.ClassifyRequest(image=image.data, top_k=5), image
        )

    @task(12)
    @needs("/detect")
    def detect(self) -> None:
        image = _image()
        self._call("/detect", "Detect", vision_pb2.DetectRequest(image=image.data), image)

    @task(6)
    @needs("/segment")
    def segment(self) -> None:
        image = _image()
        self._call("/segment", "Segment", vision_pb2.SegmentRequest(image=image.data), image)

    @task(6)
    @needs("/instances")
    def instances(self) -> None:
        image = _image()
        request = vision_pb2.SegmentInstancesRequest(image=image.data)
        self._call("/instances", "SegmentInstances", request, image)

    @task(10)
    @needs("/faces/identify")
    def identify_faces(self) -> None:
        image = _image()
        request = vision_pb2.IdentifyFacesRequest(image=image.data, top_k=3)
        self._call("/faces/identify", "IdentifyFaces", request, image, expect_face=image.has_face)

    @task(1)
    @needs("/faces/enroll")
    def enroll_face(self) -> None:
        image, subject = _enrolment()
        request = vision_pb2.EnrollFaceRequest(image=image.data, subject=subject)
        request.metadata.update({"source": "locust"})
        self._call("/faces/enroll", "EnrollFace", request, image, subject=subject)

    def _call(
        self,
        endpoint: str,
        method: str,
        request: Any,
        image: Sample,
        *,
        subject: str | None = None,
        expect_face: bool = False,
    ) -> None:
        metadata = [("authorization", f"Bearer {API_KEY}")] if API_KEY else None
        name, length, exception = method, 0, None
        start_time = time.time()
        start = time.perf_counter()
        try:
            reply = getattr(self.stub, method)(request, timeout=GRPC_TIMEOUT_S, metadata=metadata)
            ms = (time.perf_counter() - start) * 1000
            TALLY.record("grpc", "OK", ms)
            length = reply.ByteSize()
            reason = check_body(
                endpoint,
                grpc_to_rest(reply),
                image.width,
                image.height,
                subject=subject,
                expect_face=expect_face,
            )
            if reason is not None:
                exception = CheckFailed(reason)
            elif subject is not None:
                _enrolled_subjects.add(subject)
        except grpc.RpcError as error:
            ms = (time.perf_counter() - start) * 1000
            code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
            trailers = dict(error.trailing_metadata() or ()) if isinstance(error, grpc.Call) else {}
            TALLY.record("grpc", code.name, ms)
            vision_code = trailers.get("vision-error-code")
            if code == grpc.StatusCode.UNAVAILABLE and vision_code == "overloaded":
                name = f"{method} [UNAVAILABLE overloaded]"
                retry_after = trailers.get("retry-after")
                retry_after = None if retry_after is None else str(retry_after)
                exception = CheckFailed(_overload_reason(retry_after, ms))
                _back_off(self, retry_after)
            elif code == grpc.StatusCode.UNAUTHENTICATED and method == "EnrollFace" and not API_KEY:
                _disable_enrolment("the target needs an API key; set VISION_API_KEY")
                exception = CheckFailed("UNAUTHENTICATED (VISION_API_KEY not set)")
            else:
                exception = CheckFailed(f"{code.name} {vision_code or ''}".strip())
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            start_time=start_time,
            response_time=ms,
            response_length=length,
            response=None,
            context={},
            exception=exception,
        )


# ---- Test start and stop: served models, the shape, the tally, clean-up ----

_ALL_TASKS = {cls: list(cls.tasks) for cls in (VisionRestUser, VisionGrpcUser)}


def _served_tasks(host: str) -> set[str] | None:
    """The model tasks the target serves (GET /v1/models), None when it cannot be asked."""
    try:
        with urllib.request.urlopen(f"{host.rstrip('/')}/v1/models", timeout=15) as answer:
            models = json.load(answer)["models"]
        return {str(m["task"]) for m in models}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("could not list the served models (%s); running every task", exc)
        TALLY.note(f"GET /v1/models failed: {type(exc).__name__}")
        return None


def _nothing_served(user: User) -> None:
    time.sleep(1.0)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    served = _served_tasks(environment.host or "")
    skipped = []
    if served is not None:
        TALLY.served_tasks = sorted(served)
        skipped = [e for e, need in REQUIRED_TASKS.items() if not need <= served]
    for cls, tasks in _ALL_TASKS.items():
        kept = [t for t in tasks if getattr(t, "vision_endpoint", None) not in skipped]
        cls.tasks = kept or [_nothing_served]
    TALLY.skipped_endpoints = skipped
    if skipped:
        log.warning("skipping endpoints whose models are not served: %s", ", ".join(skipped))
    log.info("images: %s; gRPC target %s", describe(IMAGE_SIZES), grpc_target(environment.host))


def _cleanup(host: str) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}
    for subject in sorted(_enrolled_subjects):
        url = f"{host.rstrip('/')}/faces/subjects/{urllib.parse.quote(subject)}"
        request = urllib.request.Request(url, method="DELETE", headers=headers)
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except (OSError, urllib.error.HTTPError) as exc:
            log.warning("could not delete the test subject %s: %s", subject, exc)
    _enrolled_subjects.clear()


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    if environment.host and os.environ.get("LOADTEST_CLEANUP", "1") != "0":
        _cleanup(environment.host)
    tally_file = os.environ.get("LOADTEST_TALLY_FILE")
    if tally_file:
        TALLY.write(Path(tally_file))


if os.environ.get("LOADTEST_SHAPE", "none") == "step":

    class StepShape(LoadTestShape):
        """Users stepping up to a plateau (load_tests/shape.py: StepPlan from LOADTEST_STEP_*,
        LOADTEST_MAX_USERS, LOADTEST_DURATION); opted in by LOADTEST_SHAPE=step."""

        def __init__(self) -> None:
            super().__init__()
            self.plan = StepPlan.from_env()

        def tick(self) -> tuple[int, float] | None:
            return self.plan.tick(self.get_run_time())

elif os.environ.get("LOADTEST_SHAPE", "none") not in ("", "none"):
    raise ValueError(f"LOADTEST_SHAPE must be step or none, not {os.environ['LOADTEST_SHAPE']!r}")
