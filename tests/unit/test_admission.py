"""Fast shedding (service/serving/admission.py): Little's law on a model's calls in flight,
armed only by ground truth (the backend refusing, or a call far over budget), with a clock the
test moves, and the backend wrapper refusing at once with `overloaded`."""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from service.errors import Overloaded
from service.serving.admission import Admission, SheddingBackend


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def arm(gate: Admission) -> None:
    """One call the backend refused: the model is known to be past capacity."""
    gate.finished(gate.started(), refused=True)


def busy(calls: int, armed: bool = True) -> tuple[Clock, Admission]:
    """A gate (1 s budget) on the test's clock with `calls` started, armed by a refusal."""
    clock = Clock()
    gate = Admission(budget_s=1.0, clock=clock)
    for _ in range(calls):
        gate.started()
    if armed:
        arm(gate)
    return clock, gate


def test_few_calls_in_flight_are_always_admitted() -> None:
    clock = Clock()
    gate = Admission(budget_s=1.0, clock=clock)
    gate.started()
    arm(gate)
    assert gate.armed
    assert gate.admit()  # one in flight: below min_in_flight
    gate.started()
    assert gate.admit()  # no completion yet in this busy period: nothing to predict from


def test_the_predicted_wait_follows_littles_law() -> None:
    clock, gate = busy(30)
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


def test_an_unarmed_gate_admits_a_burst_whatever_the_prediction() -> None:
    """Early in a burst the prediction runs high; until the backend refuses a call (or one
    takes more than twice the budget) the batcher alone decides."""
    clock = Clock()
    gate = Admission(budget_s=1.0, clock=clock)
    starts = [gate.started() for _ in range(30)]
    clock.now += 1.5
    for start in starts[:10]:
        gate.finished(start)  # 1.5 s each: over budget, under 2x
    assert gate.predicted_wait() > 2.0
    assert not gate.armed and gate.admit()
    clock.now += 0.6
    gate.finished(starts[10])  # 2.1 s: more than twice the budget
    assert gate.armed and not gate.admit()


def test_refused_calls_arm_the_gate_and_do_not_count_as_completions() -> None:
    clock = Clock()
    gate = Admission(budget_s=1.0, clock=clock)
    starts = [gate.started() for _ in range(12)]
    clock.now += 0.5
    for start in starts[:4]:
        gate.finished(start, refused=True)
    assert gate.armed
    assert gate.rate(clock.now) == 0.0 and gate.admit()  # nothing completed: no prediction
    gate.finished(starts[4])  # 1 done in 0.5 s: 2/s, 7 in flight: 4 s
    assert gate.predicted_wait() == pytest.approx(4.0) and not gate.admit()


def test_the_gate_disarms_when_the_load_recedes() -> None:
    clock, gate = busy(20)
    clock.now += 1.0
    for _ in range(10):
        gate.finished()  # 10/s, 10 in flight: 1.1 s
    assert not gate.admit() and gate.armed
    for _ in range(7):
        gate.finished()  # 17/s, 3 in flight: 0.24 s, under half the budget
    assert gate.admit() and not gate.armed
    # a drained queue disarms too
    arm(gate)
    for _ in range(3):
        gate.finished()
    assert gate.in_flight == 0
    gate.started()
    assert not gate.armed


def test_the_rate_forgets_old_completions_and_idle_periods() -> None:
    clock = Clock()
    gate = Admission(budget_s=1.0, window_s=2.0, clock=clock)
    gate.started()
    clock.now += 0.1
    gate.finished()  # idle again
    clock.now += 60
    for _ in range(5):
        gate.started()  # a new busy period: the old completion does not count
    arm(gate)
    assert gate.rate(clock.now) == 0.0 and gate.admit()
    for _ in range(3):
        clock.now += 1.0
        gate.finished()
        gate.started()
    clock.now += 0.5
    # completions at 1, 2 and 3 s of a 3.5 s busy period; only the last 2 s count: 2 / 2 s
    assert gate.rate(clock.now) == pytest.approx(1.0)
    assert gate.predicted_wait() == pytest.approx(6.0) and not gate.admit()


class Recording:
    """A backend that records its calls; refuses them (the batcher's 503) when `full`."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.full = False

    async def infer(self, name: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.calls.append(name)
        if self.full:
            raise Overloaded("the model runner is at capacity; retry later")
        return {"out": batch}

    async def describe(self) -> dict[str, dict[str, object]]:
        return {}


def test_the_backend_refuses_at_once_with_retry_after() -> None:
    clock = Clock()
    inner = Recording()
    backend = SheddingBackend(inner, budget_s=0.5, clock=clock)
    batch = np.zeros((1, 2), np.float32)
    assert anyio.run(backend.infer, "m", batch)["out"] is batch
    gate = backend.models["m"]
    for _ in range(20):
        gate.started()
    clock.now += 1.0
    for _ in range(4):
        gate.finished()  # 4/s with 16 in flight: about 4.2 s predicted
    assert anyio.run(backend.infer, "m", batch)["out"] is batch  # not armed: admitted
    # (5 done in 1 s now: 5/s with 16 in flight, 3.4 s predicted)
    inner.full = True
    with pytest.raises(Overloaded, match="runner"):
        anyio.run(backend.infer, "m", batch)  # the backend's own refusal arms the gate
    inner.full = False
    assert gate.armed
    with pytest.raises(Overloaded, match=r"about 3\.4 s") as caught:
        anyio.run(backend.infer, "m", batch)
    assert caught.value.headers["Retry-After"] == "3"
    assert inner.calls == ["m"] * 3  # the refused call never reached the backend
    assert gate.in_flight == 16
    assert anyio.run(backend.infer, "other", batch)["out"] is batch  # per model


def test_the_check_before_decoding_covers_every_graph_of_a_model() -> None:
    clock = Clock()
    backend = SheddingBackend(Recording(), budget_s=1.0, clock=clock)
    backend.check("faces")  # nothing known yet: admitted
    gate = backend.models["faces/refine"] = Admission(1.0, clock=clock)
    backend.models["faces-embedder"] = Admission(1.0, clock=clock)
    for _ in range(10):
        gate.started()
    arm(gate)
    clock.now += 1.0
    gate.finished()  # 1/s with 9 in flight: 10 s predicted
    with pytest.raises(Overloaded, match="faces/refine"):
        backend.check("faces")
    backend.check("faces-embedder")  # another model (a name that only shares a prefix)
