"""Fast load shedding in front of the model backend: refuse now what would wait too long.

Past capacity, BentoML's batcher keeps a request queued until it sees that the latency budget
(`VISION_MAX_LATENCY_MS`) cannot be met, and only then answers 503: measured with Locust on
the 2-core machine, those 503s took 0.4-1.6 s. Here every worker predicts a new request's wait
from its own calls of that model with Little's law: wait = (calls in flight + 1) / completion
rate, the rate measured over the current busy period (at most the last `window_s`). When the
prediction passes the budget the request is refused at once with `overloaded` 503 and
Retry-After, so admitted requests keep their latency bound and refused ones learn it at once.

The prediction alone runs high early in a burst (the rate is measured on the small batches
that started it, and a batcher's throughput grows with its queue), and once refused a burst
that the batcher served in time. So it only acts on a model that is known to be past capacity:
a gate is *armed* by ground truth, the backend itself refusing a call (the batcher's 503) or a
call taking more than `arm_factor` x the budget, and *disarmed* when the predicted wait falls
under `release` x the budget or the model's queue drains (the load has receded). Unarmed, or with
fewer than `min_in_flight` calls in flight, or before any call of the busy period has finished,
everything is admitted and the batcher's own rule decides.

`check(model)` asks the same question before the pipeline starts, so a refused request costs
no decoding; the check at the call itself still guards the later stages of a cascade.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from service.errors import Overloaded
from service.pipeline.session import BatchOutput
from service.serving.backends import Backend, Runtime

MAX_RETRY_AFTER_S = 10  # Retry-After: the predicted excess wait, 1 to 10 s


class Admission:
    """The shedding decision for one model in one worker."""

    def __init__(
        self,
        budget_s: float,
        window_s: float = 2.0,
        min_in_flight: int = 2,
        arm_factor: float = 2.0,
        release: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget_s = budget_s
        self.window_s = window_s
        self.min_in_flight = min_in_flight
        self.arm_factor = arm_factor
        self.release = release
        self.clock = clock
        self.in_flight = 0
        self.busy_since = 0.0
        self.done: deque[float] = deque()
        self.armed = False

    def rate(self, now: float) -> float:
        """Completions per second over the busy period (at most the last `window_s`)."""
        while self.done and self.done[0] < now - self.window_s:
            self.done.popleft()
        span = min(self.window_s, now - self.busy_since)
        return len(self.done) / span if span > 0 and self.done else 0.0

    def predicted_wait(self) -> float:
        rate = self.rate(self.clock())
        return (self.in_flight + 1) / rate if rate > 0 else 0.0

    def admit(self) -> bool:
        if not self.armed or self.in_flight < self.min_in_flight:
            return True
        wait = self.predicted_wait()
        if wait == 0.0:  # no completion in this busy period yet: nothing to predict from
            return True
        if wait < self.release * self.budget_s:
            self.armed = False  # the load has receded
            return True
        return wait <= self.budget_s

    def started(self) -> float:
        """Count a call in; returns its start time for `finished`."""
        now = self.clock()
        if self.in_flight == 0:  # a new busy period: the queue had drained
            self.busy_since = now
            self.done.clear()
            self.armed = False
        self.in_flight += 1
        return now

    def finished(self, started_at: float | None = None, refused: bool = False) -> None:
        """Count a call out; `refused` when the backend refused it (past capacity: it arms the
        gate, and is not a completion of the rate)."""
        now = self.clock()
        self.in_flight -= 1
        if not refused:
            self.done.append(now)
        slow = started_at is not None and now - started_at > self.arm_factor * self.budget_s
        if refused or slow:
            self.armed = True


class SheddingBackend:
    """A backend (runner or local) whose `infer` is guarded by one Admission per model."""

    def __init__(
        self, backend: Backend, budget_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.backend = backend
        self.budget_s = budget_s
        self.clock = clock
        self.models: dict[str, Admission] = {}

    async def infer(self, name: str, batch: np.ndarray) -> BatchOutput:
        admission = self.models.get(name)
        if admission is None:
            admission = self.models[name] = Admission(self.budget_s, clock=self.clock)
        if not admission.admit():
            raise self._overloaded(name, admission)
        started_at = admission.started()
        refused = False
        try:
            return await self.backend.infer(name, batch)
        except Overloaded:
            refused = True
            raise
        finally:
            admission.finished(started_at, refused)

    def check(self, model: str) -> None:
        """Refuse a request for `model` before any work is spent on it (decoding included)
        when a graph of the model would refuse its call now."""
        for name, admission in self.models.items():
            if (name == model or name.startswith(model + "/")) and not admission.admit():
                raise self._overloaded(name, admission)

    def _overloaded(self, name: str, admission: Admission) -> Overloaded:
        wait = admission.predicted_wait()
        return Overloaded(
            f"{name} is at capacity: a new request would wait about {wait:.1f} s "
            f"(budget {self.budget_s:g} s); retry later",
            retry_after_s=min(MAX_RETRY_AFTER_S, max(1, math.ceil(wait - self.budget_s))),
        )

    async def describe(self) -> Runtime:
        return await self.backend.describe()
