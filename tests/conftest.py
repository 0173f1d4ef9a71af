"""Shared fixtures: sample images and a real `bentoml serve` subprocess with the bundled models."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MODEL_STORE = ROOT / "model_store"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def encode(pixels: np.ndarray | Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


class Server:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log
        self.client = httpx.Client(base_url=url, timeout=60)

    def classify(self, data: bytes, **fields: object) -> httpx.Response:
        form = {k: str(v) for k, v in fields.items()}
        return self.client.post(
            "/classify", files={"image": ("image", data, "application/octet-stream")}, data=form
        )

    def alive(self) -> bool:
        return self.process.poll() is None and self.client.get("/livez").status_code == 200


def start_server(tmp: Path, env_overrides: dict[str, str]) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "VISION_MODEL_STORE": str(MODEL_STORE),
        "VISION_HTTP_WORKERS": "2",
        **env_overrides,
    }
    subprocess.run(
        [sys.executable, "-m", "service.cli", "import-models"], env=env, check=True, cwd=ROOT
    )
    log = tmp / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "service.gateway:Vision", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if server.client.get("/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"server not ready in time:\n{log.read_text()[-3000:]}")


def stop_server(server: Server) -> None:
    server.client.close()
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


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
