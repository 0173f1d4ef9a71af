"""Our Open Inference Protocol proto speaks tritonclient's wire format: every message, field
number, type and label we define matches tritonclient's own descriptor, and our service's
methods exist there with the same request and response types.

Both define `inference.*`, so they cannot share one descriptor pool: both files are read as
FileDescriptorProtos (ours compiled by protoc, theirs parsed from the generated module's
source) without importing either.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTO = "service/api/grpc/oip/oip.proto"


def protoc(*options: str) -> None:
    """grpcio-tools' protoc on our proto, from the repository root (as `make protos`)."""
    command = [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", *options, PROTO]
    subprocess.run(command, cwd=ROOT, check=True)


def ours(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    out = tmp_path / "oip.desc"
    protoc(f"--descriptor_set_out={out}")
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (file,) = descriptors.file
    return file


def theirs() -> descriptor_pb2.FileDescriptorProto:
    spec = importlib.util.find_spec("tritonclient.grpc")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tritonclient is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "service_pb2.py"
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            return descriptor_pb2.FileDescriptorProto.FromString(ast.literal_eval(node.args[0]))
    raise AssertionError(f"no serialized descriptor in {source}")


def messages(file: descriptor_pb2.FileDescriptorProto) -> dict[str, descriptor_pb2.DescriptorProto]:
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        found[prefix + message.name] = message
        for nested in message.nested_type:
            walk(prefix + message.name + ".", nested)

    for message in file.message_type:
        walk("", message)
    return found


def test_every_message_and_field_matches_tritonclient(tmp_path: Path) -> None:
    mine, triton = ours(tmp_path), theirs()
    assert mine.package == triton.package == "inference"
    our_messages, their_messages = messages(mine), messages(triton)
    assert len(our_messages) >= 20
    for name, message in our_messages.items():
        assert name in their_messages, name
        their_fields = {f.name: f for f in their_messages[name].field}
        for field in message.field:
            other = their_fields.get(field.name)
            assert other is not None, f"{name}.{field.name}"
            assert (field.number, field.type, field.label) == (
                other.number,
                other.type,
                other.label,
            ), f"{name}.{field.name}"
            assert field.type_name.rsplit(".", 1)[-1] == other.type_name.rsplit(".", 1)[-1]


def test_our_methods_exist_in_tritonclient_with_the_same_types(tmp_path: Path) -> None:
    (service,) = ours(tmp_path).service
    (their_service,) = theirs().service
    assert service.name == their_service.name == "GRPCInferenceService"
    their_methods = {m.name: m for m in their_service.method}
    assert {m.name for m in service.method} == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "RepositoryIndex",
    }
    for method in service.method:
        other = their_methods[method.name]
        assert (method.input_type, method.output_type) == (other.input_type, other.output_type)
