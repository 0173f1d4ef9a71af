"""Shared fixtures: sample images and a real `bentoml serve` subprocess with the bundled models."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.serverproc import MODEL_STORE, ROOT, ServerProcess, free_port
from bench.serverproc import start_server as start_server_process

__all__ = ["MODEL_STORE", "ROOT", "Server", "encode", "free_port", "start_server", "stop_server"]


def encode(pixels: np.ndarray | Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


class Server:
    """A running server (bench.serverproc) with an httpx client on it."""

    def __init__(self, proc: ServerProcess) -> None:
        self.proc = proc
        self.url = proc.url
        self.process = proc.process
        self.log = proc.log
        self.client = httpx.Client(base_url=proc.url, timeout=60)

    def classify(self, data: bytes, **fields: object) -> httpx.Response:
        form = {k: str(v) for k, v in fields.items()}
        return self.client.post(
            "/classify", files={"image": ("image", data, "application/octet-stream")}, data=form
        )

    def alive(self) -> bool:
        return self.process.poll() is None and self.client.get("/livez").status_code == 200


def start_server(tmp: Path, env_overrides: dict[str, str]) -> Server:
    return Server(start_server_process(tmp, {"VISION_HTTP_WORKERS": "2", **env_overrides}))


def stop_server(server: Server) -> None:
    server.client.close()
    server.proc.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("server")
    srv = start_server(
        tmp, {"VISION_MAX_BODY_BYTES": str(4 * 1024 * 1024), "VISION_MAX_CONCURRENCY": "16"}
    )
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real photos from installed packages (never committed)."""
    import matplotlib.cbook
    from skimage import data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    return {
        "astronaut": data.astronaut(),
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
        "grace_hopper": hopper,
    }


@pytest.fixture(scope="session")
def bad_images() -> dict[str, tuple[bytes, int, str]]:
    from tests.samples import bad_images as build

    return build()


@pytest.fixture(scope="session")
def odd_images() -> dict[str, bytes]:
    from tests.samples import odd_images as build

    return build()
