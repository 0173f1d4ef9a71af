"""`vision` command line: import-models and serve, and the commands other packages add.

The training commands (`training.cli`) and the benchmark (`bench.cli`) are plugins: each
installs an entry point in the `vision.commands` group (pyproject.toml) whose `register(sub)`
adds its subcommands, so the service imports neither. Where a plugin's package is absent (the
serving image holds service/ only), its commands are simply not offered.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from importlib.metadata import entry_points
from pathlib import Path

from service.settings import PROCESS_ENV_DEFAULTS, get_settings

PLUGINS = "vision.commands"


def import_models(root: Path, skip_invalid: bool) -> tuple[int, str]:
    """Import model_store/ into the BentoML store, printing each tag and each problem of an
    invalid package (a line each, no traceback). Returns (exit status, the skipped packages as
    `VISION_INVALID_MODELS` JSON): 2 when a package is invalid and `skip_invalid` is off."""
    from service.pipeline.package import InvalidPackage
    from service.serving.model_store import import_all

    if not root.is_dir():
        print(f"vision: no model store at {root}; pass --model-store DIR", file=sys.stderr)
        return 2, ""
    report = import_all(root)
    for tag, created in report.imported:
        print(f"{'imported' if created else 'unchanged'} {tag}")
    for bad in report.invalid:
        for problem in bad.problems:
            print(f"{'skipped' if skip_invalid else 'invalid'}: {problem}", file=sys.stderr)
    if report.invalid and not skip_invalid:
        print(
            f"vision: {len(report.invalid)} invalid package(s) in {root}: fix them, remove "
            "them, or set VISION_SKIP_INVALID_MODELS=true to serve the others",
            file=sys.stderr,
        )
        return 2, ""
    return 0, InvalidPackage.dump(report.invalid)


def cmd_import_models(args: argparse.Namespace) -> int:
    return import_models(Path(args.model_store), get_settings().skip_invalid_models)[0]


def port_in_use(host: str, port: int) -> str | None:
    """Why `port` cannot be listened on at `host` (None when it can). A listener of another
    process with SO_REUSEPORT counts as in use: our gRPC server would silently share it."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    settings = get_settings()
    port = str(args.port or settings.http_port)
    # Refuse at once: with a port taken, every worker fails its startup and BentoML restarts it
    # forever, so the service would never be ready and say so only in its log.
    ports = [("HTTP", int(port), "--port or VISION_HTTP_PORT")]
    if settings.grpc_port:
        ports.append(("gRPC", settings.grpc_port, "VISION_GRPC_PORT (0 turns gRPC off)"))
    for kind, number, knob in ports:
        reason = port_in_use(settings.host, number)
        if reason is not None:
            print(
                f"vision serve: the {kind} port {settings.host}:{number} cannot be used "
                f"({reason}); stop what holds it or choose another with {knob}",
                file=sys.stderr,
            )
            return 2
    status, skipped = import_models(Path(settings.model_store), settings.skip_invalid_models)
    if status:
        return status
    os.environ["VISION_INVALID_MODELS"] = skipped
    os.environ["VISION_HTTP_PORT"] = port
    for key, value in PROCESS_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    argv = [
        "bentoml",
        "serve",
        "service.serving.gateway:Vision",
        "--port",
        port,
        "--host",
        settings.host,
    ]
    argv += ["--timeout-keep-alive", str(settings.http_keep_alive_s)]
    if args.reload:
        argv.append("--reload")
    print("starting:", " ".join(argv), flush=True)
    os.execvp(sys.executable, [sys.executable, "-m", *argv])
    return 0  # pragma: no cover


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vision", description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import-models", help="import model_store/* into the BentoML model store")
    p.add_argument("--model-store", default=str(get_settings().model_store))
    p.set_defaults(func=cmd_import_models)

    p = sub.add_parser("serve", help="import the bundled models and start the service")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--reload", action="store_true")
    p.set_defaults(func=cmd_serve)

    for plugin in entry_points(group=PLUGINS):
        try:
            register = plugin.load()
        except ModuleNotFoundError:  # its package is not installed here
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "passthrough", False):  # the command parses its own arguments
        return int(args.func(args, rest) or 0)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
