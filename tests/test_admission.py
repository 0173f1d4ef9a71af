"""Fast shedding (service/admission.py): Little's law on a model's calls in flight, with a
clock the test moves, and the backend wrapper refusing at once with `overloaded`."""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from service.admission import Admission, SheddingBackend
from service.errors import Overloaded


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_few_calls_in_flight_are_always_admitted() -> None:
    clock = Clock()
    gate = Admission(budget_s=1.0, clock=clock)
    gate.started()
    assert gate.admit()  # one in flight: below min_in_flight
    gate.started()
    assert gate.admit()  # no completion yet in this busy period: nothing to predict from


def test_the_predicted_wait_follows_littles_law() -> None:
    clock = Clock()
    gate = Admission(budget_s=1.0, clock=clock)
    for _ in range(30):
        gate.started()
    clock.now += 0.5
    for _ in range(10):  # 10 done in 0.5 s of busy period: 20/s
        gate.finished()
    assert gate.rate(clock.now) == pytest.approx(20.0)
    assert gate.in_flight == 20
    assert gate.predicted_wait() == pytest.approx(21 / 20)
    assert not gate.admit()  # 1.05 s > 1 s
    gate.finished()
    gate.finished()  # 18 in flight, 12 done in 0.5 s: 24/s, 19/24 s
    assert gate.admit()


def test_the_rate_forgets_old_completions_and_idle_periods() -> None:
    clock = Clock()
    gate = Admission(budget_s=1.0, window_s=2.0, clock=clock)
    gate.started()
    clock.now += 0.1
    gate.finished()  # idle again
    clock.now += 60
    for _ in range(5):
        gate.started()  # a new busy period: the old completion does not count
    assert gate.rate(clock.now) == 0.0 and gate.admit()
    for _ in range(3):
        clock.now += 1.0
        gate.finished()
        gate.started()
    clock.now += 0.5
    # completions at 1, 2 and 3 s of a 3.5 s busy period; only the last 2 s count: 2 / 2 s
    assert gate.rate(clock.now) == pytest.approx(1.0)
    assert gate.predicted_wait() == pytest.approx(6.0) and not gate.admit()


def test_the_backend_refuses_at_once_with_retry_after() -> None:
    clock = Clock()
    calls: list[str] = []

    class Slow:
        async def infer(self, name: str, batch: np.ndarray) -> dict[str, np.ndarray]:
            calls.append(name)
            return {"out": batch}

        async def describe(self) -> dict[str, dict[str, object]]:
            return {}

    backend = SheddingBackend(Slow(), budget_s=0.5, clock=clock)
    batch = np.zeros((1, 2), np.float32)
    assert anyio.run(backend.infer, "m", batch)["out"] is batch
    gate = backend.models["m"]
    for _ in range(20):
        gate.started()
    clock.now += 1.0
    for _ in range(4):
        gate.finished()  # 4/s with 16 in flight: about 4.2 s predicted
    with pytest.raises(Overloaded) as caught:
        anyio.run(backend.infer, "m", batch)
    assert caught.value.headers["Retry-After"] == "4"
    assert calls == ["m"]  # the refused call never reached the backend
    assert gate.in_flight == 16
    assert anyio.run(backend.infer, "other", batch)["out"] is batch  # per model


def test_the_check_before_decoding_covers_every_graph_of_a_model() -> None:
    clock = Clock()

    class Idle:
        async def infer(self, name: str, batch: np.ndarray) -> dict[str, np.ndarray]:
            return {}

        async def describe(self) -> dict[str, dict[str, object]]:
            return {}

    backend = SheddingBackend(Idle(), budget_s=1.0, clock=clock)
    backend.check("faces")  # nothing known yet: admitted
    gate = backend.models["faces/refine"] = Admission(1.0, clock=clock)
    backend.models["faces-embedder"] = Admission(1.0, clock=clock)
    for _ in range(10):
        gate.started()
    clock.now += 1.0
    gate.finished()  # 1/s with 9 in flight: 10 s predicted
    with pytest.raises(Overloaded, match="faces/refine"):
        backend.check("faces")
    backend.check("faces-embedder")  # another model (a name that only shares a prefix)
