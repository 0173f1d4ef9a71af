"""Command-line plumbing shared by the training commands; no torch import (``training.cli``
registers every command before torch is needed, and without it on a serving install).

- ``command_line``: the command that is running, as a user would type it (packages record it);
- ``hyperparameters``: a run's options as plain values (metrics.json, args.json, checkpoints);
- ``add_common_args``: the options ``train-detector``, ``train-segmenter`` and
  ``train-instances`` share;
- ``add_resume_arg``: ``--resume`` on every train-* command (``training.common.resume``);
- the ``evaluate-*`` commands' package / ``--url`` options (``add_package_arg``,
  ``add_url_args``, ``add_output_args``) and ``package_or_url``.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

AddArgs = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
Command = Callable[[argparse.Namespace], int]
# options that are not the run's: the CLI's own and --resume
NOT_OPTIONS = ("func", "command_line", "resume")
# what a resumed run may be given anew (the rest comes from its checkpoint)
MAY_CHANGE = ("epochs", "threads", "load_threads")


def command_line(args: argparse.Namespace) -> str:
    """The exact command that is running, as a user would type it."""
    if getattr(args, "command_line", None):
        return str(args.command_line)
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("cli.py", "__main__.py"):
        return shlex.join(["python", "-m", "training.cli", *argv[1:]])
    if argv:
        argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def plain(value: Any) -> Any:
    """``value`` with every path (also inside a list or tuple) as a string."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    return value


def hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    """A run's options for metrics.json, args.json and checkpoints (paths as strings, no CLI
    internals)."""
    return {k: plain(v) for k, v in vars(args).items() if k not in NOT_OPTIONS}


def recorded_args(command: str, name: str, add_args: AddArgs) -> argparse.Namespace:
    """The ``name`` options (``train-detector``...) of a recorded command line."""
    words = shlex.split(command)
    if name not in words:
        raise SystemExit(f"not a {name} command: {command!r}")
    parser = add_args(argparse.ArgumentParser(prog=name))
    return parser.parse_args(words[words.index(name) + 1 :])


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


class ResumeAction(argparse.Action):
    """``--resume RUN_DIR``: the run's options come from its checkpoint, so the options its
    parser requires (``--train``, ``--data``, ...) are not required alongside it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        for action in parser._actions:
            action.required = False
        setattr(namespace, self.dest, Path(values))


def add_resume_arg(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--resume`` (after the parser's other options: it names those that may change)."""
    dests = {a.dest: a.option_strings[0] for a in p._actions if a.option_strings}
    allowed = ", ".join(dests[name] for name in MAY_CHANGE if name in dests)
    p.add_argument(
        "--resume",
        action=ResumeAction,
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR (runs/<name>) from its last.pt at the next epoch; "
        f"its options come from the checkpoint, and only {allowed} may be given anew",
    )
    return p


def add_common_args(
    p: argparse.ArgumentParser, *, name: str, image_size: int, head_convs: int
) -> argparse.ArgumentParser:
    """The options of ``train-detector``, ``train-segmenter`` and ``train-instances``."""
    p.add_argument("--name", default=name)
    p.add_argument("--version", default="1")
    p.add_argument("--description", default="")
    p.add_argument("--output-dir", type=Path, default=Path("model_store"))
    p.add_argument("--run-dir", type=Path, default=None, help="default runs/<name>")
    p.add_argument("--image-size", type=int, default=image_size, help="square letterbox side")
    p.add_argument("--limit", type=int, default=None, help="use the first N training images")
    p.add_argument("--test-limit", type=int, default=None)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--eval-every", type=int, default=1, help="validate every N epochs and last")
    p.add_argument("--patience", type=int, default=0, help="epochs; 0: no early stopping")
    p.add_argument("--max-steps", type=int, default=None, help="stop each epoch early (smoke)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="adamw")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument("--scale-jitter", type=float, default=0.25, help="0 disables")
    p.add_argument("--widths", type=ints, default="24,48,96,144,192", help="stem + 4 stages")
    p.add_argument("--depths", type=ints, default="1,2,2,2", help="blocks per stage")
    p.add_argument("--fpn-width", type=int, default=96)
    p.add_argument("--head-convs", type=int, default=head_convs)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for training")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda if present"
    )
    p.add_argument("--load-threads", type=int, default=4, help="threads decoding the data set")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--opset", type=int, default=17)
    return add_resume_arg(p)


def lazy(target: str) -> Command:
    """The command ``module:function`` (it takes the parsed options, returns the exit status),
    imported only when it runs: the commands are registered without torch."""
    module, _, function = target.partition(":")

    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(module), function)(args))

    return run


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    help: str,
    func: Command | str,
    add_args: Callable[[argparse.ArgumentParser], object] | None = None,
    *,
    defaults: bool = False,
) -> argparse.ArgumentParser:
    """The subcommand ``name`` running ``func`` (a ``lazy`` target when a string), with
    ``add_args``'s options (more can follow); ``defaults``: its help shows each option's
    default."""
    formatter = argparse.ArgumentDefaultsHelpFormatter if defaults else argparse.HelpFormatter
    p = subparsers.add_parser(name, help=help, formatter_class=formatter)
    if add_args is not None:
        add_args(p)
    p.set_defaults(func=lazy(func) if isinstance(func, str) else func)
    return p


def add_coco_evaluate_args(
    p: argparse.ArgumentParser, annotations_help: str, url_help: str, default_model: str, png: str
) -> None:
    """``evaluate-detector`` / ``evaluate-instances``: a package or ``--url``, a COCO set."""
    add_package_arg(p)
    p.add_argument("--annotations", type=Path, required=True, help=annotations_help)
    add_url_args(p, url_help, default_model)
    add_output_args(p, png)


def add_package_arg(p: argparse.ArgumentParser, help: str = "model package directory") -> None:
    """An ``evaluate-*`` command's optional package directory (or ``--url``)."""
    p.add_argument("package", type=Path, nargs="?", default=None, help=help)


def add_url_args(p: argparse.ArgumentParser, url_help: str, default_model: str) -> None:
    """``--url`` (score a running service instead of a package), ``--model``, ``--concurrency``."""
    p.add_argument("--url", default=None, help=url_help)
    p.add_argument("--model", default=None, help=f"with --url: the model (default {default_model})")
    p.add_argument("--concurrency", type=int, default=8, help="with --url: requests in flight")


def add_output_args(p: argparse.ArgumentParser, png_help: str) -> None:
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--png", type=Path, default=None, help=png_help)


def package_or_url(args: argparse.Namespace, command: str) -> None:
    """An ``evaluate-*`` command scores a package or a running service, never both or none."""
    if (args.package is None) == (args.url is None):
        raise SystemExit(f"{command}: give a package directory or --url, not both")
