"""Every patch of BentoML internals, in one place (written against BentoML 1.4.39, the pinned
version; each says what it changes and why, and fails loudly or says so when the internals moved).

- `cap_batch_wait`: a cap on the adaptive batcher's learned wait.
- `keep_runner_session`: one long-lived HTTP session, with a short keep-alive, per worker for
  the runner client.

The batching wait: BentoML's CorkDispatcher holds a lone request back while it waits for
company, for as long as the average queueing wait of the last 50 batches (`Optimizer.wait`).
After a burst of load that average is large, and every lone request then waits that long and
feeds the same wait back into the average: measured here, p50 at concurrency 1 went from 6 ms
to 60 ms after a 5 s burst at concurrency 64 and was still 24 ms 80 s later. Batches under load
do not need the wait (requests queue while the previous batch runs), so we cap it.
"""

from __future__ import annotations

import sys
from typing import Any

from bentoml._internal.marshal import dispatcher

RUNNER_KEEPALIVE_S = 4.0  # below uvicorn's default 5 s keep-alive on the runner


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


def keep_runner_session(proxy: Any) -> None:
    """Stop BentoML 1.4.39 from recycling the runner client's HTTP session.

    Its SessionManager closes the session every 100 requests or 5 minutes, which fails every
    request still in flight on it ("Connector is closed"; BentoML issues #5540, #5544). One
    long-lived session per worker is what we want anyway.
    """
    manager = getattr(getattr(proxy, "_async", None), "_session_manager", None)
    if manager is None:
        print(
            "BentoML client internals changed; runner session recycling stays on", file=sys.stderr
        )
        return
    manager.max_requests = sys.maxsize
    manager.max_age = float("inf")
    # aiohttp keeps idle connections 15 s, the runner's uvicorn closes them after 5 s: a burst
    # after a pause then reuses dead connections (seen: two in a row failing one request). Drop
    # idle connections before the server does (the fix proposed upstream in BentoML PR #5698).
    make_client = manager._make_client

    def make_client_with_short_keepalive() -> Any:
        session = make_client()
        if session.connector is not None:
            session.connector._keepalive_timeout = RUNNER_KEEPALIVE_S
        return session

    manager._make_client = make_client_with_short_keepalive
