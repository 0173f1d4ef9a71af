"""The training tests' instruments: a tiny train-detector / -segmenter / -instances command
(``scene_argv``), and for ``--resume``: interrupt a run during its second epoch, resume it, and
compare it with the same run left uninterrupted (same weights, same metrics.jsonl rows but for
the times)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

TIMES = ("epoch_time_s", "train_time_s", "images_per_s", "elapsed_s")


def scene_argv(
    command: str, data: Path, tmp: Path, run: str, name: str, *options: str
) -> list[str]:
    """``command`` for 2 epochs of at most 2 steps of a narrow network on ``data`` (train and
    test), run directory ``tmp / run``, package ``tmp / store / name``; ``options`` add to it."""
    return [
        command, f"--train={data}", f"--test={data}", *options, "--epochs=2", "--max-steps=2",
        "--val-fraction=0.25", "--widths=16,16,16,32,32", "--fpn-width=16",
        f"--output-dir={tmp / 'store'}", f"--run-dir={tmp / run}", f"--name={name}",
    ]  # fmt: skip


def rows(run_dir: Path) -> list[dict]:
    """The run's metrics.jsonl rows without their times."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMES} for line in lines]


def interrupted_and_resumed(
    main: Callable[[list[str]], int],
    argv: list[str],
    run_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run ``argv`` (a train-* command of 2 epochs writing to ``run_dir``), killed as its second
    epoch starts, then ``<command> --resume run_dir``."""
    import torch

    from training.common.run import Run

    bar = Run.bar

    def interrupting(self: Run, batches: object, epoch: int) -> object:
        if epoch == 2:
            raise KeyboardInterrupt
        return bar(self, batches, epoch)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(Run, "bar", interrupting)
        with pytest.raises(KeyboardInterrupt):
            main(argv)
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in rows(run_dir)] == [1]
    assert main([argv[0], "--resume", str(run_dir)]) == 0


def assert_same_run(whole: Path, resumed: Path) -> None:
    """The two runs' checkpoints hold the same weights (and optimiser state), their rows the
    same losses and metrics."""
    import torch

    assert rows(resumed) == rows(whole) and len(rows(whole)) == 2
    for name in ("last.pt", "best.pt"):
        a = torch.load(whole / name, weights_only=True)
        b = torch.load(resumed / name, weights_only=True)
        assert a["epoch"] == b["epoch"] and a["model"].keys() == b["model"].keys()
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
        for key, state in a["optimizer"]["state"].items():
            assert all(torch.equal(v, b["optimizer"]["state"][key][k]) for k, v in state.items())
    record = resumed / "summary.json"  # train-classifier's record is train.json
    record = record if record.exists() else resumed / "train.json"
    assert [r["after_epoch"] for r in json.loads(record.read_text())["resumed"]] == [1]


def assert_refused(
    main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> str:
    """``argv`` exits with status 2 and one line on stderr, which is returned."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]
