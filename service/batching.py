"""A cap on BentoML's learned batching wait.

BentoML's CorkDispatcher holds a lone request back while it waits for company, for as long as
the average queueing wait of the last 50 batches (`Optimizer.wait`). After a burst of load that
average is large, and every lone request then waits that long and feeds the same wait back into
the average: measured here, p50 at concurrency 1 went from 6 ms to 60 ms after a 5 s burst at
concurrency 64 and was still 24 ms 80 s later. Batches under load do not need the wait (requests
queue while the previous batch runs), so we cap it.
"""

from __future__ import annotations

from typing import Any

from bentoml._internal.marshal import dispatcher


def cap_batch_wait(max_wait_s: float) -> None:
    """Make every CorkDispatcher created from now on in this process cap its learned wait."""
    base: Any = dispatcher.Optimizer
    if getattr(base, "capped_wait_s", None) is not None:
        base.capped_wait_s = max_wait_s
        return

    class CappedOptimizer(base):
        capped_wait_s = max_wait_s

        def trigger_refresh(self) -> None:
            super().trigger_refresh()
            self.wait: float = min(float(self.wait), type(self).capped_wait_s)

    dispatcher.Optimizer = CappedOptimizer  # type: ignore[misc]
