"""Packaging helpers every exporter uses to write ``model_store/<name>/``: provenance (the
training command, seed, data, git commit, date, training time, hardware, framework versions),
the staging directory, the exported graph, metrics.json, the package's common fields, and the
install.

A package is assembled in ``<run_dir>/package`` and swapped into place at the end, so a
reader of ``model_store/`` never sees a half-written package.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from service.pipeline.package import (
    MODEL_FILE,
    Evaluation,
    InputSpec,
    ModelPackage,
    Provenance,
    Task,
)
from training.common.args import hyperparameters
from training.common.export import export_onnx
from training.common.letterbox import PAD_VALUE
from training.common.log import CURVE_FILE

METRICS_FILE = "metrics.json"


def git_commit() -> str:
    """HEAD, with "+dirty" when training/ has uncommitted changes; "unknown" outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "training"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return head + ("+dirty" if status.strip() else "")


def hardware(threads: int, device: str | None = None) -> str:
    """This machine's CPU; with ``device`` (a run's ``cuda (...)``), where training ran."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    here = f"{cpu}, {os.cpu_count()} cores"
    if device and not device.startswith("cpu"):
        return f"trained on {device}, {threads} CPU threads; exported and evaluated on {here}"
    return f"{here}; torch device cpu, {threads} threads"


def frameworks() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def provenance(summary: dict, seed: int, data: str, commit: str | None = None) -> Provenance:
    """The package's provenance from a run's summary (``command``, ``training_time_s``,
    ``threads``, optional ``device``, training ``framework`` versions and ``resumed``: the
    commands that continued the run, named after its own); ``commit`` defaults to the current
    ``git_commit()``."""
    resumed = [
        f"resumed after epoch {r['after_epoch']}: {r['command']}"
        for r in summary.get("resumed", [])
    ]
    return Provenance(
        command="; ".join([summary["command"], *resumed]),
        seed=seed,
        data=data,
        git_commit=commit or git_commit(),
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        training_time_s=float(summary["training_time_s"]),
        hardware=hardware(int(summary["threads"]), summary.get("device")),
        framework=_framework(summary.get("framework", {})),
    )


def _framework(training: dict[str, str]) -> dict[str, str]:
    """This machine's versions (export, evaluation), plus ``training_<name>`` for each version
    the training machine had that differs."""
    here = frameworks()
    return here | {f"training_{k}": v for k, v in training.items() if here.get(k) != v}


def fresh_stage(run_dir: Path) -> Path:
    """An empty ``<run_dir>/package`` to assemble a package in, with the run's training curve
    (``training_curve.png``, validation metric by training time) when there is one."""
    stage = run_dir / "package"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    curve = run_dir / CURVE_FILE
    if curve.exists():
        shutil.copy(curve, stage / curve.name)
    return stage


@dataclass(frozen=True)
class Stage:
    """A package being assembled for a run (``args``, its ``summary``): the staging directory
    (``fresh_stage``) and the exported graph in it."""

    args: argparse.Namespace
    summary: dict[str, Any]
    dir: Path
    onnx: Path

    def install(self, metrics: dict[str, Any], **package: Any) -> Path:
        """metrics.json: ``metrics``, the run's ``training`` summary and ``hyperparameters``;
        then the package (``install``: ``task``, ``description`` and its other fields)."""
        training = {"training": self.summary, "hyperparameters": hyperparameters(self.args)}
        write_json(self.dir / METRICS_FILE, metrics | training)
        return install(self.args, self.dir, **package)


def export_stage(
    wrapper: nn.Module,
    args: argparse.Namespace,
    summary: dict[str, Any],
    run_dir: Path,
    size: int,
    output_name: str | Sequence[str],
) -> Stage:
    """A ``fresh_stage`` with ``wrapper`` (put in eval mode) exported into it, for a square
    ``size`` input at ``--opset``."""
    stage = fresh_stage(run_dir)
    onnx_path = export_onnx(
        wrapper.eval(), stage / MODEL_FILE, size, size, args.opset, output_name=output_name
    )
    return Stage(args, summary, stage, onnx_path)


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """A package's metrics.json (indented; values JSON cannot hold as strings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def evaluations(
    args: argparse.Namespace,
    test: tuple[str, int, dict[str, float]],
    validation: tuple[str, int, dict[str, float]],
    *,
    split: str = "test",
    note: str = "",
) -> list[Evaluation]:
    """model.json's evaluations, each ``(dataset, samples, metrics)``: on the test ``split``, and
    on the validation images ``--val-fraction`` held out of train (``note`` adds to its split)."""
    (test_set, test_count, test_metrics), (val_set, val_count, val_metrics) = test, validation
    held_out = f"validation ({args.val_fraction:.0%} held out of train, seed {args.seed}{note})"
    return [
        Evaluation(dataset=test_set, split=split, samples=test_count, metrics=test_metrics),
        Evaluation(dataset=val_set, split=held_out, samples=val_count, metrics=val_metrics),
    ]


def letterboxed(
    args: argparse.Namespace,
    size: tuple[int, int],
    classes: Sequence[str],
    test: tuple[str, int, dict[str, float]],
    validation: tuple[str, int, dict[str, float]],
    note: str = "",
) -> dict[str, Any]:
    """A letterboxed package's ``input`` (centred on ``PAD_VALUE``), ``labels`` and
    ``evaluation`` (``evaluations``)."""
    height, width = size
    return {
        "input": InputSpec(width=width, height=height, resize="letterbox", pad_value=PAD_VALUE),
        "labels": list(classes),
        "evaluation": evaluations(args, test, validation, note=note),
    }


def install(
    args: argparse.Namespace, stage: Path, *, task: Task, description: str, **fields: Any
) -> Path:
    """The package ``--name`` ``--version`` (``--description``, else ``description``) of
    ``task`` with ``fields``: model.json into ``stage``, then ``stage`` into
    ``--output-dir/--name``."""
    package = ModelPackage(
        name=args.name,
        task=task,
        version=args.version,
        description=args.description or description,
        **fields,
    )
    return save_and_install(package, stage, args.output_dir / args.name)


def check_labels(classes: Sequence[str], labels: Sequence[str]) -> None:
    """A data set scores a package only with the package's labels, in its order."""
    if list(classes) != list(labels):
        raise SystemExit(f"data set classes {classes} != package labels {labels}")


def letterboxed_package(directory: Path, task: str, kind: str) -> ModelPackage:
    """The package in ``directory``, which must be a letterboxed ``task`` package."""
    package = ModelPackage.load(directory)
    if package.task != task or package.input.resize != "letterbox":
        raise SystemExit(f"{directory} is not a letterboxed {kind} package")
    return package


def save_and_install(package: ModelPackage, stage: Path, target: Path) -> Path:
    """Write model.json into ``stage``, validate it by a round trip, swap it into ``target``."""
    package.save(stage)
    ModelPackage.load(stage)  # round-trip validation
    return _install(stage, target)


def _install(stage: Path, target: Path) -> Path:
    """Swap the staged package into ``target`` (two renames on one file system)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    try:
        stage.rename(target)
    except OSError:  # another file system
        shutil.copytree(stage, target)
        shutil.rmtree(stage)
    shutil.rmtree(old, ignore_errors=True)
    size = sum(f.stat().st_size for f in target.iterdir())
    print(f"wrote {target} ({size / 1e6:.2f} MB)", file=sys.stderr)
    return target
