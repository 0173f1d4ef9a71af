"""The committed vision.v1 modules are what `make protos` generates from vision.proto
(the OIP modules have the same check in tests/test_oip_proto.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = "service/vision_v1/vision.proto"


def test_the_committed_vision_modules_are_generated_from_the_proto(tmp_path: Path) -> None:
    outputs = [f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}"]
    command = [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", *outputs, PROTO]
    subprocess.run(command, cwd=ROOT, check=True)
    for name in ("vision_pb2.py", "vision_pb2.pyi", "vision_pb2_grpc.py"):
        fresh = (tmp_path / "service" / "vision_v1" / name).read_text()
        assert fresh == (ROOT / "service" / "vision_v1" / name).read_text(), "run `make protos`"
