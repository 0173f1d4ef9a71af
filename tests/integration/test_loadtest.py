"""The Locust load test (load_tests/): the schema checks, the step shape, and a short smoke run
of `python -m load_tests.run --smoke` against a local service (REST and gRPC users, zero
failures required, every report file written)."""

from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from load_tests.checks import check_body, check_error, grpc_to_rest
from load_tests.shape import StepPlan

ROOT = Path(__file__).resolve().parents[2]

CLASSIFY = {
    "model": {"name": "fashion-classifier", "version": "abc"},
    "image": {"width": 640, "height": 480},
    "timing_ms": {"decode": 1.2, "total": 9.5},
    "predictions": [
        {"class_id": 8, "label": "Bag", "score": 0.7},
        {"class_id": 6, "label": "Shirt", "score": 0.2},
    ],
}
IDENTIFY = {
    "model": {"name": "faces-embedder", "version": "1"},
    "image": {"width": 512, "height": 512},
    "timing_ms": {"total": 100.0},
    "threshold": 0.88,
    "faces": [
        {
            "box": [1.0, 2.0, 30.0, 40.0],
            "score": 0.99,
            "landmarks": [[5.0, 6.0]] * 5,
            "subject": None,
            "matches": [],
        }
    ],
}
INSTANCES = {
    "model": {"name": "scenes-instances", "version": "1"},
    "image": {"width": 64, "height": 32},
    "timing_ms": {"total": 1.0},
    "instances": [
        {
            "class_id": 1,
            "label": "Trouser",
            "score": 0.5,
            "box": [0.0, 0.0, 10.0, 10.0],
            "area": 12,
            "mask": {"size": [32, 64], "counts": "abc"},
        }
    ],
}


def test_valid_bodies_pass() -> None:
    assert check_body("/classify", CLASSIFY, 640, 480) is None
    assert check_body("/faces/identify", IDENTIFY, 512, 512, expect_face=True) is None
    assert check_body("/instances", INSTANCES) is None
    detect = {**CLASSIFY, "detections": []}
    del detect["predictions"]
    assert check_body("/detect", detect) is None


@pytest.mark.parametrize(
    ("endpoint", "body", "mutate", "reason"),
    [
        ("/classify", CLASSIFY, lambda b: b.pop("model"), "no 'model'"),
        ("/classify", CLASSIFY, lambda b: b.pop("timing_ms"), "timing_ms"),
        ("/classify", CLASSIFY, lambda b: b["image"].update(width="640"), "image.width"),
        ("/classify", CLASSIFY, lambda b: b.update(predictions=[]), "predictions"),
        ("/classify", CLASSIFY, lambda b: b["predictions"].reverse(), "score-descending"),
        ("/classify", CLASSIFY, lambda b: b["predictions"][0].pop("label"), "no 'label'"),
        ("/classify", CLASSIFY, lambda b: b["image"].update(width=320), "size is not the size"),
        ("/faces/identify", IDENTIFY, lambda b: b.update(faces=[]), "no face found"),
        ("/faces/identify", IDENTIFY, lambda b: b["faces"][0].update(box=[1, 2]), "face.box"),
        ("/faces/identify", IDENTIFY, lambda b: b.pop("threshold"), "threshold"),
        ("/instances", INSTANCES, lambda b: b["instances"][0]["mask"].update(size=[1, 1]), "size"),
        ("/detect", CLASSIFY, lambda b: None, "no 'detections'"),
    ],
)
def test_bad_bodies_are_flagged(endpoint, body, mutate, reason) -> None:
    sizes = {"/classify": (640, 480), "/faces/identify": (512, 512)}
    bad = copy.deepcopy(body)
    mutate(bad)
    width, height = sizes.get(endpoint, (None, None))
    got = check_body(endpoint, bad, width, height, expect_face=endpoint == "/faces/identify")
    assert got is not None and reason in got, got
    assert check_body("/classify", "not json") is not None


def test_error_bodies_and_grpc_conversion() -> None:
    assert check_error({"error": {"code": "overloaded", "message": "later"}}) == "overloaded"
    assert check_error({"error": "text"}) is None
    assert check_error(["x"]) is None

    from service.api.grpc.vision_v1 import vision_pb2

    reply = vision_pb2.IdentifyFacesResponse(threshold=0.9)
    reply.model.name, reply.image.width, reply.image.height = "faces-embedder", 20, 10
    reply.timing_ms["total"] = 3.0
    face = reply.faces.add(box=[1, 2, 3, 4], score=0.9)
    face.landmarks.add(x=1.0, y=2.0)
    body = grpc_to_rest(reply)
    assert body["faces"][0]["landmarks"] == [[1.0, 2.0]]
    assert body["faces"][0]["subject"] is None and body["faces"][0]["matches"] == []
    assert check_body("/faces/identify", body, 20, 10) is None


def test_step_shape_schedule() -> None:
    plan = StepPlan(step_users=3, step_seconds=10, max_users=7, duration=45, spawn_rate=5)
    expected: dict[float, int | None] = {0: 3, 9.9: 3, 10: 6, 19: 6, 20: 7, 44.9: 7, 45: None}
    for t, users in expected.items():
        assert plan.tick(t) == (None if users is None else (users, 5.0)), t
    env = {
        "LOADTEST_STEP_USERS": "2",
        "LOADTEST_STEP_SECONDS": "4",
        "LOADTEST_MAX_USERS": "5",
        "LOADTEST_DURATION": "30",
    }
    assert StepPlan.from_env(env) == StepPlan(2, 4.0, 5, 30.0, 10.0)
    with pytest.raises(ValueError):
        StepPlan.from_env({"LOADTEST_STEP_USERS": "0"})


SHAPE_PROBE = """
import runpy
from locust.shape import LoadTestShape
from locust.util.load_locustfile import is_shape_class
ns = runpy.run_path("load_tests/locustfile.py")
shapes = [v for v in ns.values() if is_shape_class(v)]
if not shapes:
    print("none")
else:
    shape = shapes[0]()
    ticks = []
    for t in (0, 4.9, 5, 12, 29.9, 30):
        shape.get_run_time = lambda t=t: t
        ticks.append(shape.tick())
    print(ticks)
"""


@pytest.mark.parametrize("mode", ["step", "none"])
def test_locustfile_shape_opt_in(mode: str) -> None:
    """The locustfile's LoadTestShape exists only with LOADTEST_SHAPE=step and ticks by the
    plan (in a subprocess: importing Locust monkey-patches the process with gevent)."""
    env = {
        **os.environ,
        "LOADTEST_SHAPE": mode,
        "LOADTEST_STEP_USERS": "2",
        "LOADTEST_STEP_SECONDS": "5",
        "LOADTEST_MAX_USERS": "5",
        "LOADTEST_DURATION": "30",
        "LOADTEST_SPAWN_RATE": "4",
    }
    run = subprocess.run(
        [sys.executable, "-c", SHAPE_PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    if mode == "none":
        assert last == "none"
    else:
        assert last == "[(2, 4.0), (2, 4.0), (4, 4.0), (5, 4.0), (5, 4.0), None]"


BACKOFF_PROBE = """
import runpy, types
ns = runpy.run_path("load_tests/locustfile.py")
user = types.SimpleNamespace()
wait = ns["VisionRestUser"].wait_time
before = wait(user)
ns["_back_off"](user, "3")
after = wait(user)
ns["_back_off"](user, "soon")  # not a number: ignored
print(before, after, ns["TALLY"].summary()["backoffs"])
"""


@pytest.mark.parametrize("policy", ["honour", "ignore"])
def test_users_wait_out_retry_after(policy: str) -> None:
    """After an `overloaded` answer a user's next request waits its Retry-After (honour, the
    default), or only its think time (ignore, constant pressure for overload runs)."""
    env = {
        **os.environ,
        "LOADTEST_WAIT_MIN": "0.1",
        "LOADTEST_WAIT_MAX": "0.2",
        "LOADTEST_RETRY_AFTER": policy,
    }
    run = subprocess.run(
        [sys.executable, "-c", BACKOFF_PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    before, after, backoffs = run.stdout.strip().splitlines()[-1].split()
    assert 0.1 <= float(before) <= 0.2
    if policy == "honour":
        assert 2.9 <= float(after) <= 3.0 and backoffs == "1"
    else:
        assert 0.1 <= float(after) <= 0.2 and backoffs == "0"


@pytest.mark.slow
def test_smoke_run(tmp_path: Path) -> None:
    """About 20 s of REST and gRPC load on a local service: zero failures, every output."""
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "load_tests.run", "--smoke", "--out", str(out), "--no-append"]
    # SIGTERM on a hang: run.py then stops the service it started (its own process group).
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as run:
        try:
            output, _ = run.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            run.terminate()
            output, _ = run.communicate(timeout=60)
    log = output.decode(errors="replace")[-6000:]
    assert run.returncode == 0, log
    for name in (
        "smoke_stats.csv",
        "smoke_stats_history.csv",
        "smoke_failures.csv",
        "smoke.html",
        "smoke.png",
        "smoke_summary.md",
        "smoke_tally.json",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (out / "smoke_stats.csv").open() as f:
        rows = list(csv.DictReader(f))
    kinds = {r["Type"] for r in rows if int(r["Request Count"]) > 0}
    assert {"POST", "grpc"} <= kinds, kinds
    total = next(r for r in rows if r["Name"] == "Aggregated")
    assert int(total["Request Count"]) >= 20 and int(total["Failure Count"]) == 0
    summary = (out / "smoke_summary.md").read_text()
    assert "failures: 0" in summary and "green throughout" in summary
    assert "| REST | `/classify`" in summary
