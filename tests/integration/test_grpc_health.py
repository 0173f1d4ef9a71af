"""The gRPC port of a running server: health (per service and overall), reflection, metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import Server, start_server, stop_server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    server = start_server(tmp_path_factory.mktemp("grpc"), {"VISION_MODELS": "fashion-classifier"})
    yield server, server.proc.grpc_port
    stop_server(server)


def health(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def test_health_serves_once_ready(served: tuple[Server, int]) -> None:
    _, port = served
    assert health(port) == health_pb2.HealthCheckResponse.SERVING
    assert health(port, "grpc.health.v1.Health") == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health(port, "no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(served: tuple[Server, int]) -> None:
    _, port = served
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in answer.list_services_response.service}
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_grpc_calls_are_counted(served: tuple[Server, int]) -> None:
    server, port = served
    for _ in range(3):
        health(port)
    metrics = server.client.get("/metrics").text
    pattern = (
        r'^vision_grpc_requests_total\{code="OK",method="/grpc.health.v1.Health/Check"\} (\S+)$'
    )
    match = re.search(pattern, metrics, re.M)
    assert match is not None and float(match.group(1)) >= 3
    assert 'vision_grpc_request_duration_seconds_count{method="/grpc.health.v1.Health/Check"}' in (
        metrics
    )


def test_the_grpc_port_closes_with_the_server(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"VISION_MODELS": "fashion-classifier"})
    port = server.proc.grpc_port
    assert health(port) == health_pb2.HealthCheckResponse.SERVING
    stop_server(server)
    with pytest.raises(grpc.RpcError) as caught:
        health(port)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_when_configured(tmp_path: Path) -> None:
    """With a certificate and key the port speaks TLS only: a client trusting the certificate
    is served, a plaintext client is not."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj"]
    names = ["/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
    subprocess.run(
        [openssl, *request, *names, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    env = {
        "VISION_MODELS": "fashion-classifier",
        "VISION_GRPC_TLS_CERT": str(cert),
        "VISION_GRPC_TLS_KEY": str(key),
    }
    server = start_server(tmp_path / "server", env)
    try:
        port = server.proc.grpc_port
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            health(port)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        stop_server(server)
