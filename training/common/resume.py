"""``--resume runs/<name>``: a train-* command continues a run from its ``last.pt``.

The run's options are the checkpoint's (``args``), so ``vision train-detector --resume
runs/scenes-detector`` needs nothing else. An option given again must keep its value, except
those in ``MAY_CHANGE``: ``--epochs`` (to extend a run: its cosine schedule then runs to the
new last epoch from where it stands, so the run differs from one started with that many
epochs), ``--threads`` and ``--load-threads`` (where the run continues). Any other change (the
model's shape, the data, the optimiser...) exits with status 2 and one line saying which option
it was. The training command a package records stays the run's own; each resume is listed in
the run's summary (``resumed``).

No torch import until a run resumes: the commands' modules (``<task>/args.py``) register
their train-* commands with ``add_train_command``.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from training.common.args import MAY_CHANGE, AddArgs, add_command, command_line


def refuse(name: str, message: str) -> NoReturn:
    print(f"{name}: {message}", file=sys.stderr)
    raise SystemExit(2)


def relaxed(name: str, add_args: AddArgs) -> argparse.ArgumentParser:
    """A fresh ``name`` parser whose options are all optional."""
    parser = add_args(argparse.ArgumentParser(prog=name))
    for action in parser._actions:
        action.required = False
    return parser


def given_options(words: list[str], name: str, add_args: AddArgs) -> dict[str, Any]:
    """The options ``words`` (a command's arguments) set explicitly, parsed as ``name`` parses
    them. (No option of ours parses to None, so None marks one that was not given.)"""
    parser = relaxed(name, add_args)
    for action in parser._actions:
        action.default = None
    return {k: v for k, v in vars(parser.parse_args(words)).items() if v is not None}


def saved_options(parser: argparse.ArgumentParser, saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's ``args`` (paths stored as strings) as the parser gives them: its defaults
    for options the run did not have, paths as paths."""
    options = vars(parser.parse_args([])) | saved
    for action in parser._actions:
        value = options.get(action.dest)
        if action.type is Path and value is not None:
            options[action.dest] = (
                [Path(v) for v in value] if isinstance(value, list) else Path(value)
            )
    return options


def flag(parser: argparse.ArgumentParser, dest: str) -> str:
    return next(a.option_strings[0] for a in parser._actions if a.dest == dest and a.option_strings)


def resume(
    args: argparse.Namespace, name: str, add_args: AddArgs
) -> tuple[argparse.Namespace, str, dict | None]:
    """``(args, command, checkpoint)`` for the trainer of ``name`` (``train-detector``...): as
    given and no checkpoint, or, with ``--resume``, the run's options (with the changes allowed),
    its own command and its ``last.pt``."""
    command = command_line(args)
    if args.resume is None:
        return args, command, None
    from training.common.checkpoint import LAST_FILE, load_checkpoint

    run_dir: Path = args.resume
    if not (run_dir / LAST_FILE).is_file():
        refuse(name, f"--resume {run_dir}: no {LAST_FILE} there, nothing to resume")
    checkpoint = load_checkpoint(run_dir / LAST_FILE)
    if name not in shlex.split(checkpoint["command"]):
        refuse(name, f"--resume {run_dir}: not a {name} run (`{checkpoint['command']}`)")
    parser = relaxed(name, add_args)
    options = saved_options(parser, checkpoint["args"])
    words = shlex.split(command)
    for dest, value in given_options(words[words.index(name) + 1 :], name, add_args).items():
        if dest in MAY_CHANGE:
            options[dest] = value
        elif dest != "resume" and value != options.get(dest):
            allowed = ", ".join(flag(parser, d) for d in MAY_CHANGE if d in options)
            refuse(
                name,
                f"--resume {run_dir}: {flag(parser, dest)} cannot change on resume (the run has "
                f"{options.get(dest)!r}, given {value!r}); only {allowed} may",
            )
    if options["epochs"] < checkpoint["epoch"]:
        refuse(name, f"--resume {run_dir}: the run is past epoch {checkpoint['epoch']} already")
    recorded = options["run_dir"] or Path("runs") / options["name"]
    if Path(recorded).resolve() != run_dir.resolve():  # the run was moved: it is here now
        options["run_dir"] = run_dir
    options["resume"] = run_dir
    checkpoint["resumed"] = [
        *checkpoint["resumed"],
        {"after_epoch": checkpoint["epoch"], "command": command},
    ]
    return argparse.Namespace(**options), checkpoint["command"], checkpoint


def train_command(
    main: Callable[[argparse.Namespace, str, dict | None], object],
    args: argparse.Namespace,
    name: str,
    add_args: AddArgs,
) -> int:
    """Run a trainer's ``main(args, command, checkpoint)``; with ``--resume``, on the run's
    options and state."""
    main(*resume(args, name, add_args))
    return 0


def add_train_command(
    subparsers: argparse._SubParsersAction, name: str, help: str, target: str, add_args: AddArgs
) -> None:
    """The command ``name`` (``train-detector``...) with ``add_args``'s options, running the
    trainer ``module:main`` through ``train_command``, imported only when it runs."""
    module, _, function = target.partition(":")

    def run(args: argparse.Namespace) -> int:
        main = getattr(importlib.import_module(module), function)
        return train_command(main, args, name, add_args)

    add_command(subparsers, name, help, run, add_args, defaults=True)


def add_train_and_evaluate(
    subparsers: argparse._SubParsersAction,
    module: str,
    train: tuple[str, str, AddArgs],
    evaluate: tuple[str, str, Callable[[argparse.ArgumentParser], object]],
) -> None:
    """A task's two commands, each ``(name, help, options)``: ``train`` runs ``module.train``'s
    ``main``, ``evaluate`` ``module.eval``'s ``evaluate_command``."""
    add_train_command(subparsers, *train[:2], f"{module}.train:main", train[2])
    name, help, add_args = evaluate
    add_command(subparsers, name, help, f"{module}.eval:evaluate_command", add_args)
