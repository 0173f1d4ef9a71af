"""`vision serve` with a port already taken: it refuses at once with a clear message instead
of starting workers that fail their startup and are restarted forever."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.serverproc import ROOT, free_port
from service.cli import port_in_use


@pytest.fixture
def listener() -> Iterator[int]:
    """A port held by another listener (with SO_REUSEPORT, like a stale server's gRPC)."""
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("0.0.0.0", 0))
        held.listen()
        yield int(held.getsockname()[1])


def serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "VISION_HOST": "0.0.0.0"}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--port", env.pop("PORT")],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_port_in_use_tells_free_from_held(listener: int) -> None:
    assert port_in_use("0.0.0.0", listener) is not None
    assert port_in_use("0.0.0.0", free_port()) is None


def test_serve_refuses_a_taken_grpc_port(tmp_path: Path, listener: int) -> None:
    done = serve(tmp_path, {"PORT": str(free_port()), "VISION_GRPC_PORT": str(listener)})
    assert done.returncode == 2, done.stderr
    assert f"gRPC port 0.0.0.0:{listener} cannot be used" in done.stderr
    assert "VISION_GRPC_PORT" in done.stderr
    assert not (tmp_path / "bentoml").exists()  # nothing started, nothing imported


def test_serve_refuses_a_taken_http_port(tmp_path: Path, listener: int) -> None:
    done = serve(tmp_path, {"PORT": str(listener), "VISION_GRPC_PORT": str(free_port())})
    assert done.returncode == 2, done.stderr
    assert f"HTTP port 0.0.0.0:{listener} cannot be used" in done.stderr
