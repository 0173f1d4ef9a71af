"""`bentoml build` packs the service and references every bundled model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.pipeline.package import ModelPackage, content_version

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_bentoml_build_lists_the_models(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true"}
    run = {"env": env, "cwd": ROOT, "check": True, "capture_output": True, "text": True}
    imported = subprocess.run([sys.executable, "-m", "service.cli", "import-models"], **run)
    again = subprocess.run([sys.executable, "-m", "service.cli", "import-models"], **run)
    assert "imported" in imported.stdout
    assert "imported" not in again.stdout  # same bytes, same tag: a no-op
    subprocess.run([sys.executable, "-m", "bentoml", "build"], **run)
    get = [sys.executable, "-m", "bentoml", "get", "vision:latest", "-o", "json"]
    info = json.loads(subprocess.run(get, **run).stdout)
    tags = {m["tag"] for service in info["services"] for m in service["models"]}
    expected = set()
    for manifest in (ROOT / "model_store").glob("*/model.json"):
        package = ModelPackage.load(manifest.parent)
        expected.add(f"{package.name}:{content_version(manifest.parent, package)}")
    assert expected and expected <= tags


def test_bentoml_build_without_imported_models_says_how_to_import_them(tmp_path: Path) -> None:
    """`bentoml build` run as documented, but with a BENTOML_HOME that holds no models (the
    default ~/bentoml, say), stops with the instruction instead of packing a Bento with none."""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true"}
    run = subprocess.run(
        [sys.executable, "-m", "bentoml", "build"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert "no vision model in the BentoML model store" in run.stdout + run.stderr
    assert "vision import-models" in run.stdout + run.stderr
    assert not list((tmp_path / "bentos").glob("*/*/bento.yaml"))
