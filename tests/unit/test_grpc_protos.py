"""The committed gRPC modules are what `make protos` generates from our protos (the OIP proto's
wire compatibility with tritonclient is checked in tests/unit/test_oip_proto.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ["service/api/grpc/vision_v1/vision.proto", "service/api/grpc/oip/oip.proto"]


@pytest.mark.parametrize("proto", PROTOS)
def test_the_committed_modules_are_generated_from_the_proto(tmp_path: Path, proto: str) -> None:
    outputs = [f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}"]
    command = [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", *outputs, proto]
    subprocess.run(command, cwd=ROOT, check=True)
    folder, stem = Path(proto).parent, Path(proto).stem
    for name in (f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"):
        fresh = (tmp_path / folder / name).read_text()
        assert fresh == (ROOT / folder / name).read_text(), f"run `make protos` ({name})"
