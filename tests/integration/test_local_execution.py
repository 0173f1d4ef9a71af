"""VISION_EXECUTION=local: the same pipeline with ONNX in the HTTP workers, same answers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server, encode, start_server, stop_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("local"), {"VISION_EXECUTION": "local"})
    yield srv
    stop_server(srv)


def test_local_execution_matches_the_runner(
    local_server: Server, server: Server, photos: dict[str, np.ndarray]
) -> None:
    for name, pixels in photos.items():
        data = encode(pixels, "JPEG")
        local = local_server.classify(data, top_k=3)
        remote = server.classify(data, top_k=3)
        assert local.status_code == remote.status_code == 200, name
        assert local.json()["predictions"] == remote.json()["predictions"], name
    models = local_server.client.get("/v1/models").json()["models"]
    assert models and all("CPUExecutionProvider" in m["providers"] for m in models)
    text = local_server.client.get("/metrics").text
    families = {f.name for f in text_string_to_metric_families(text)}
    assert "vision_stage_duration_seconds" in families
    assert "bentoml_service_adaptive_batch_size" not in families  # no runner, no batching
    assert local_server.classify(b"junk").json()["error"]["code"] == "invalid_image"
