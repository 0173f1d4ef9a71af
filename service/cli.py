"""`vision` command line: import-models, serve, bench, and the training commands (train extra)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from service.settings import PROCESS_ENV_DEFAULTS, get_settings


def cmd_import_models(args: argparse.Namespace) -> int:
    from service.model_store import import_all

    for tag, created in import_all(Path(args.model_store)):
        print(f"{'imported' if created else 'unchanged'} {tag}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = get_settings()
    cmd_import_models(argparse.Namespace(model_store=str(settings.model_store)))
    port = str(args.port or settings.http_port)
    os.environ["VISION_HTTP_PORT"] = port
    for key, value in PROCESS_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    argv = ["bentoml", "serve", "service.gateway:Vision", "--port", port, "--host", settings.host]
    if args.reload:
        argv.append("--reload")
    print("starting:", " ".join(argv), flush=True)
    os.execvp(sys.executable, [sys.executable, "-m", *argv])
    return 0  # pragma: no cover


def cmd_bench(args: argparse.Namespace) -> int:
    from service.bench import main as bench_main

    return bench_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vision", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import-models", help="import model_store/* into the BentoML model store")
    p.add_argument("--model-store", default=str(get_settings().model_store))
    p.set_defaults(func=cmd_import_models)

    p = sub.add_parser("serve", help="import the bundled models and start the service")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--reload", action="store_true")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("bench", help="serving benchmark (appends to docs/BENCHMARKS.md)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_bench)

    if importlib.util.find_spec("torch") is None:  # serving install: no training commands
        p = sub.add_parser("train-classifier", help="(needs the `train` extra)")
        p.set_defaults(func=lambda _a: _missing_train())
    else:
        from training.cli import register

        register(sub)
    return parser


def _missing_train() -> int:
    print("training needs the `train` extra: make train-classifier, or pip install -e '.[train]'",
          file=sys.stderr)  # fmt: skip
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the bench has its own parser: pass every flag through
        from service.bench import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
