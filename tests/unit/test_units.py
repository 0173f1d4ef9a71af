"""Pure units: top-k, results, registry, model package schema, settings, providers, middleware."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from service.api import bodies
from service.api.rest.middleware import BodyLimitMiddleware, ConcurrencyLimitMiddleware
from service.ops.topk import top_k
from service.pipeline.package import Evaluation, ModelPackage, Quantized, content_version
from service.pipeline.session import CPU, CUDA, choose_providers
from service.settings import Settings
from service.tasks import TASKS, TaskRegistry
from service.tasks.classification import ClassificationModel
from service.tasks.results import Classification

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "model_store" / "fashion-classifier"


@pytest.mark.parametrize(
    ("scores", "k", "ids", "values"),
    [
        ([0.1, 0.7, 0.2], 1, [1], [0.7]),
        ([0.1, 0.7, 0.2], 2, [1, 2], [0.7, 0.2]),
        ([0.1, 0.7, 0.2], 99, [1, 2, 0], [0.7, 0.2, 0.1]),
        ([0.5, 0.5, 0.0], 2, [0, 1], [0.5, 0.5]),  # ties keep the lower index first
        ([0.0], 1, [0], [0.0]),
    ],
)
def test_top_k(scores: list[float], k: int, ids: list[int], values: list[float]) -> None:
    got_ids, got_values = top_k(np.array(scores, np.float32), k)
    assert got_ids.tolist() == ids
    np.testing.assert_allclose(got_values, values)


@pytest.mark.parametrize("k", [0, -1])
def test_top_k_rejects_non_positive_k(k: int) -> None:
    with pytest.raises(ValueError):
        top_k(np.ones(3), k)


def test_top_k_rejects_2d() -> None:
    with pytest.raises(ValueError):
        top_k(np.ones((2, 3)), 1)


def test_classification_result_checks_and_indexes() -> None:
    result = Classification(np.array([2, 0]), np.array([0.9, 0.1], np.float32), ["a", "b", "c"])
    assert len(result) == 2
    (top, _) = bodies.predictions(result)
    assert top == {"class_id": 2, "label": "c", "score": pytest.approx(0.9)}
    assert len(result[result.scores > 0.5]) == 1
    with pytest.raises(ValueError):
        Classification(np.array([3]), np.array([0.5]), ["a", "b", "c"])
    with pytest.raises(ValueError):
        Classification(np.array([0, 1]), np.array([0.5]), ["a", "b"])


def test_registry_is_explicit() -> None:
    assert TASKS.get("classification") is ClassificationModel
    with pytest.raises(KeyError, match="unknown task"):
        TASKS.get("poetry")
    registry = TaskRegistry()
    registry.register(ClassificationModel)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(ClassificationModel)


def _manifest() -> dict[str, Any]:
    return json.loads((PACKAGE / "model.json").read_text())


def test_bundled_package_validates() -> None:
    package = ModelPackage.load(PACKAGE)
    assert package.task == "classification"
    assert (PACKAGE / package.file).stat().st_size <= 5 * 1024 * 1024
    assert package.provenance.command and package.provenance.seed is not None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.update(task="poetry"),
        lambda m: m.update(name="Has Spaces"),
        lambda m: m.update(labels=["a", "a"]),
        lambda m: m.update(unknown_field=1),
        lambda m: m["input"].update(width=0),
        lambda m: m["input"].update(dtype="float32"),
        lambda m: m["postprocess"].update(top_k=0),
    ],
)
def test_schema_rejects(mutate: Any) -> None:
    manifest = _manifest()
    mutate(manifest)
    with pytest.raises(ValidationError):
        ModelPackage.model_validate(manifest)


def test_package_figures_are_rounded_once_and_deltas_compare_stored_figures() -> None:
    evaluation = Evaluation(dataset="d", split="test", samples=3, metrics={"top1": 2 / 3})
    assert evaluation.metrics == {"top1": 0.666667}
    q = Quantized.against(
        "m.int8.onnx", {"top1": 1 / 3, "top5": 1.0}, {"top1": 2 / 3, "top5": 1.0}, 9
    )
    assert q.metrics == {"top1": 0.333333, "top5": 1.0}
    # 0.333333 - 0.666667, not round(1/3 - 2/3, 6) = -0.333333
    assert q.delta == {"top1": -0.333334, "top5": 0.0}
    again = Quantized.model_validate_json(q.model_dump_json())
    assert again == q


def test_content_version_follows_the_bytes(tmp_path: Path) -> None:
    package = ModelPackage.load(PACKAGE)
    for name in ("model.json", package.file):
        (tmp_path / name).write_bytes((PACKAGE / name).read_bytes())
    first = content_version(tmp_path, package)
    assert first == content_version(PACKAGE, package)
    (tmp_path / package.file).write_bytes((PACKAGE / package.file).read_bytes() + b"x")
    assert content_version(tmp_path, package) != first


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISION_HTTP_PORT", "8080")
    monkeypatch.setenv("VISION_MODELS", "a, b:1 ,")
    monkeypatch.setenv("VISION_BATCHING", "false")
    settings = Settings()
    assert settings.http_port == 8080
    assert settings.model_tags() == ["a", "b:1"]
    assert settings.batching is False
    monkeypatch.setenv("VISION_MAX_BATCH_SIZE", "1")
    with pytest.raises(ValidationError):
        Settings()


def test_provider_choice() -> None:
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    with pytest.raises(RuntimeError, match="gpu"):
        choose_providers("cuda", [CPU])


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    def json(self) -> Any:
        return json.loads(self.messages[1]["body"])


def _call(app: Any, scope: dict[str, Any], chunks: list[bytes]) -> _Recorder:
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
             for i, c in enumerate(chunks)]  # fmt: skip

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    send = _Recorder()
    asyncio.run(app(scope, receive, send))
    return send


async def _echo_app(scope: Any, receive: Any, send: Any) -> None:
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def test_body_limit_by_header_and_by_stream() -> None:
    app = BodyLimitMiddleware(_echo_app, max_bytes=10)
    scope = {"type": "http", "path": "/classify", "headers": [(b"content-length", b"11")]}
    sent = _call(app, scope, [b"x" * 11])
    assert sent.status == 413 and sent.json()["error"]["code"] == "payload_too_large"
    chunked = {"type": "http", "path": "/classify", "headers": []}
    assert _call(app, chunked, [b"x" * 6, b"x" * 6]).status == 413
    assert _call(app, chunked, [b"x" * 5, b"x" * 5]).status == 200


def test_concurrency_limit_sheds_and_exempts_probes() -> None:
    async def scenario() -> tuple[list[int], int]:
        gate = asyncio.Event()

        async def slow_app(scope: Any, receive: Any, send: Any) -> None:
            await gate.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        app = ConcurrencyLimitMiddleware(slow_app, limit=2)
        recorders = [_Recorder() for _ in range(3)]
        tasks = [
            asyncio.create_task(app({"type": "http", "path": "/classify"}, None, r))
            for r in recorders
        ]
        await asyncio.sleep(0.01)
        probe = _Recorder()
        probe_task = asyncio.create_task(app({"type": "http", "path": "/readyz"}, None, probe))
        await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(*tasks, probe_task)
        assert recorders[2].messages[0]["headers"][-1] == (b"retry-after", b"1")
        return [r.status for r in recorders], probe.status

    statuses, probe_status = asyncio.run(scenario())
    assert statuses == [200, 200, 503]
    assert probe_status == 200


def test_batch_wait_is_capped_after_a_burst() -> None:
    from bentoml._internal.marshal import dispatcher

    from service.serving.bentoml_compat import cap_batch_wait

    cap_batch_wait(0.002)
    optimizer = dispatcher.Optimizer(1.0)
    for n in range(1, 11):  # batches that queued 80 ms each during a burst
        optimizer.o_stat.append((n, 0.001 * n, 0.080))
    optimizer.trigger_refresh()
    assert optimizer.wait == pytest.approx(0.002)
    optimizer.o_stat.clear()
    optimizer.o_stat.append((1, 0.001, 0.0005))
    optimizer.trigger_refresh()
    assert optimizer.wait == pytest.approx(0.0005)  # below the cap: learned as before


def test_cli_works_without_torch() -> None:
    """The serving install has no torch: `vision` must still start and explain training."""
    import subprocess
    import sys

    code = (
        "import sys, importlib.util; real = importlib.util.find_spec;"
        "importlib.util.find_spec = lambda n, *a: None if n == 'torch' else real(n, *a);"
        "sys.modules['torch'] = None;"
        "from service.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    run = [sys.executable, "-c", code]
    assert subprocess.run([*run, "--help"], capture_output=True, cwd=ROOT).returncode == 0
    train = subprocess.run([*run, "train-classifier"], capture_output=True, text=True, cwd=ROOT)
    assert train.returncode == 2 and "train" in train.stderr


def test_timeout_answers_504_in_the_api_format() -> None:
    from service.api.rest.middleware import TimeoutMiddleware

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.2)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = TimeoutMiddleware(slow_app, timeout_s=0.05)
    sent = _call(app, {"type": "http", "path": "/classify", "headers": []}, [b""])
    assert sent.status == 504 and sent.json()["error"]["code"] == "timeout"
    relaxed = TimeoutMiddleware(slow_app, timeout_s=1.0)
    assert _call(relaxed, {"type": "http", "path": "/classify", "headers": []}, [b""]).status == 200
    probe = _call(app, {"type": "http", "path": "/readyz", "headers": []}, [b""])
    assert probe.status == 200  # probes are exempt


def test_runner_session_is_pinned_with_a_short_keepalive() -> None:
    import types

    import aiohttp

    from service.serving.bentoml_compat import RUNNER_KEEPALIVE_S, keep_runner_session

    class Manager:
        max_requests = 100
        max_age = 300.0

        def _make_client(self) -> aiohttp.ClientSession:
            return aiohttp.ClientSession(connector=aiohttp.TCPConnector())

    manager = Manager()
    keep_runner_session(
        types.SimpleNamespace(_async=types.SimpleNamespace(_session_manager=manager))
    )
    assert manager.max_requests > 10**9 and manager.max_age == float("inf")

    async def keepalive() -> float:
        session = manager._make_client()
        try:
            return float(session.connector._keepalive_timeout)  # type: ignore[union-attr]
        finally:
            await session.close()

    assert asyncio.run(keepalive()) == RUNNER_KEEPALIVE_S
