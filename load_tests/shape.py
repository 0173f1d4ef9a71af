"""The step load shape's plan: `step_users` more users every `step_seconds`, up to
`max_users`, for `duration` seconds in all (then the test stops).

The locustfile's `StepShape` (a Locust `LoadTestShape`, defined only when `LOADTEST_SHAPE=step`,
which `python -m load_tests.run` sets) ticks by it; without it (`LOADTEST_SHAPE` unset or
`none`) plain `locust -u N -r R -t T` controls the load. No Locust import here: importing
Locust monkey-patches the process with gevent.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class StepPlan:
    step_users: int = 4
    step_seconds: float = 10.0
    max_users: int = 20
    duration: float = 60.0
    spawn_rate: float = 10.0  # users started per second at each step

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StepPlan:
        """From LOADTEST_STEP_USERS, LOADTEST_STEP_SECONDS, LOADTEST_MAX_USERS,
        LOADTEST_DURATION, LOADTEST_SPAWN_RATE (defaults: the fields' defaults)."""
        env = dict(os.environ if env is None else env)
        d = cls()
        plan = cls(
            step_users=int(env.get("LOADTEST_STEP_USERS", d.step_users)),
            step_seconds=float(env.get("LOADTEST_STEP_SECONDS", d.step_seconds)),
            max_users=int(env.get("LOADTEST_MAX_USERS", d.max_users)),
            duration=float(env.get("LOADTEST_DURATION", d.duration)),
            spawn_rate=float(env.get("LOADTEST_SPAWN_RATE", d.spawn_rate)),
        )
        if min(plan.step_users, plan.max_users) < 1 or plan.step_seconds <= 0:
            raise ValueError(f"a step plan needs users >= 1 and step seconds > 0: {plan}")
        if plan.duration <= 0 or plan.spawn_rate <= 0:
            raise ValueError(f"a step plan needs duration > 0 and spawn rate > 0: {plan}")
        return plan

    def users_at(self, run_time: float) -> int | None:
        """Target user count `run_time` seconds into the test; None once it is over."""
        if run_time >= self.duration:
            return None
        steps = math.floor(run_time / self.step_seconds) + 1
        return min(self.max_users, steps * self.step_users)

    def tick(self, run_time: float) -> tuple[int, float] | None:
        """What `LoadTestShape.tick` returns `run_time` seconds in: (users, spawn rate) or
        None to stop."""
        users = self.users_at(run_time)
        return None if users is None else (users, self.spawn_rate)
