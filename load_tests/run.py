"""`make loadtest`: run the Locust load test headless and write its report.

    python -m load_tests.run                      # start the service locally, 60 s step load
    python -m load_tests.run --host http://10.0.0.5:3000 --grpc-host 10.0.0.5:50051
    python -m load_tests.run --smoke --out /tmp/lt --no-append    # 20 s, zero failures required
    python -m load_tests.run --overload           # VISION_MAX_CONCURRENCY=4, far past capacity

Without --host it starts the service itself (bench.serverproc.start_server: every bundled
model, a private temporary BentoML home and gallery, a random API key for enrolments). Locust
runs as a subprocess (`locust -f load_tests/locustfile.py --headless --csv ... --html ...
--csv-full-history`, its progress on the terminal) while a thread polls /readyz and /livez.
Then it writes into --out (default docs/loadtest/): `<name>_stats.csv`,
`<name>_stats_history.csv`, `<name>_failures.csv`, `<name>_exceptions.csv`, `<name>.html`
(Locust's report), `<name>.png` (throughput, p50/p95/p99, failures and users over time),
`<name>_tally.json` and `<name>_summary.md`; the summary is also appended to
docs/BENCHMARKS.md under "## Load test (Locust)" unless --no-append. <name> is `loadtest`,
`smoke` or `overload`.

Exit status: 0; 1 with --smoke when any request failed, or with --overload when an overload
check failed (no overloaded answer at all, one without Retry-After, health not green,
failures other than overload); 2 when Locust produced no statistics.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from load_tests.report import HealthLog, endpoint_rows, plot_history, summary_markdown

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEFAULT_OUT = ROOT / "docs" / "loadtest"
BENCHMARKS_MD = ROOT / "docs" / "BENCHMARKS.md"
HEADING = "## Load test (Locust)"
READY_TIMEOUT_S = 90.0  # per start attempt (about 15 s on 2 idle cores)
USER_CLASSES = {"rest": "VisionRestUser", "grpc": "VisionGrpcUser"}

# Defaults per mode: duration s, max users, users per step, seconds per step, think time s,
# whether users wait out a Retry-After.
MODES: dict[str, dict[str, Any]] = {
    "loadtest": {
        "duration": 60,
        "users": 20,
        "step_users": 4,
        "step_seconds": 10,
        "wait": "0.1,1",
        "retry_after": "honour",
    },
    "smoke": {
        "duration": 20,
        "users": 4,
        "step_users": 2,
        "step_seconds": 5,
        "wait": "0.1,1",
        "retry_after": "honour",
    },
    "overload": {
        "duration": 45,
        "users": 48,
        "step_users": 16,
        "step_seconds": 5,
        "wait": "0,0",
        "retry_after": "ignore",
    },
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m load_tests.run",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", help="REST base URL of a running service (default: start one here)")
    p.add_argument(
        "--grpc-host", help="HOST:PORT of its gRPC server (default: the --host name, port 50051)"
    )
    p.add_argument("--duration", type=float, help="seconds of load (default 60; smoke 20)")
    p.add_argument("--users", type=int, help="most users at once (default 20; smoke 4)")
    p.add_argument("--step-users", type=int, help="users added per step (default 4; smoke 2)")
    p.add_argument("--step-seconds", type=float, help="seconds per step (default 10; smoke 5)")
    p.add_argument("--spawn-rate", type=float, default=10.0, help="users started per second")
    p.add_argument(
        "--shape",
        choices=("step", "none"),
        default="step",
        help="step: the step shape (default); none: --users at once for --duration",
    )
    p.add_argument(
        "--wait",
        help="think time between a user's requests, MIN,MAX seconds (default 0.1,1; overload 0,0)",
    )
    p.add_argument(
        "--retry-after",
        choices=("honour", "ignore"),
        help="honour: a user answered `overloaded` waits its Retry-After before its next request "
        "(default); ignore: it goes on at once (the default with --overload: constant pressure)",
    )
    p.add_argument(
        "--protocols", default="rest,grpc", help="user classes: rest, grpc or rest,grpc (default)"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder (docs/loadtest)")
    p.add_argument("--no-append", action="store_true", help="do not append to docs/BENCHMARKS.md")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--smoke", action="store_true", help="short run (20 s, 4 users); exit 1 on any failure"
    )
    mode.add_argument(
        "--overload",
        action="store_true",
        help="drive far past capacity (48 users, no think time; a local service gets "
        "VISION_MAX_CONCURRENCY=--max-concurrency) and check the overload behaviour",
    )
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=4,
        help="VISION_MAX_CONCURRENCY of the local service with --overload (default 4 per worker)",
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the local service, e.g. VISION_HTTP_WORKERS=1 (repeatable)",
    )
    p.add_argument("--probe-timeout", type=float, default=2.0, help="health poll timeout, s")
    p.add_argument("--locust-args", default="", help="more Locust options, one shell-quoted string")
    args = p.parse_args(argv)
    args.mode = "smoke" if args.smoke else "overload" if args.overload else "loadtest"
    for key, value in MODES[args.mode].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    low, _, high = str(args.wait).partition(",")
    args.wait_min, args.wait_max = float(low), float(high or low)
    protocols = [x.strip() for x in args.protocols.split(",") if x.strip()]
    if not protocols or set(protocols) - set(USER_CLASSES):
        p.error(f"--protocols: rest and/or grpc, not {args.protocols!r}")
    args.protocol_list = protocols
    for item in args.server_env:
        if "=" not in item:
            p.error(f"--server-env wants NAME=VALUE, not {item!r}")
    if args.users < 1 or args.step_users < 1 or args.duration <= 0 or args.step_seconds <= 0:
        p.error("--users, --step-users, --duration and --step-seconds must be positive")
    return args


class HealthPoller(threading.Thread):
    """GET /readyz and /livez every `interval` seconds until stopped."""

    def __init__(self, base_url: str, timeout_s: float, interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url.rstrip("/")
        self.log = HealthLog(timeout_s=timeout_s, interval_s=interval_s)
        self.stopped = threading.Event()

    def run(self) -> None:
        from bench.serverproc import http_status

        while not self.stopped.is_set():
            for path in ("/readyz", "/livez"):
                t0 = time.perf_counter()
                status = http_status(self.base_url + path, timeout=self.log.timeout_s)
                self.log.add(path, status, (time.perf_counter() - t0) * 1000)
            self.stopped.wait(self.log.interval_s)

    def stop(self) -> HealthLog:
        self.stopped.set()
        self.join(timeout=10)
        return self.log


@contextmanager
def local_service(overrides: dict[str, str], attempts: int = 2) -> Iterator[tuple[str, str]]:
    """A service started here: (REST base URL, gRPC host:port); stopped on exit. A start that
    fails (e.g. a port taken between choosing and binding it) is retried on other ports."""
    import shutil

    from bench.serverproc import start_server

    home = Path(tempfile.mkdtemp(prefix="loadtest-"))
    try:
        for attempt in range(1, attempts + 1):
            print(f"starting the service locally (every bundled model; log {home / 'server.log'})")
            t0 = time.monotonic()
            try:
                server = start_server(home, overrides, ready_timeout=READY_TIMEOUT_S)
                break
            except RuntimeError as exc:
                print(f"the service did not start (attempt {attempt}): {str(exc)[-1500:]}")
                if attempt == attempts:
                    raise
        with server:
            print(
                f"service ready in {time.monotonic() - t0:.0f} s: {server.url}, "
                f"gRPC 127.0.0.1:{server.grpc_port}"
            )
            yield server.url, f"127.0.0.1:{server.grpc_port}"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def locust_command(args: argparse.Namespace, host: str, prefix: Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--csv-full-history",
        "--html",
        str(prefix.with_name(prefix.name + ".html")),
        "--stop-timeout",
        "10",
    ]
    if args.shape == "none":
        cmd += ["-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.duration:g}s"]
    else:  # the shape ends the test; the run time is a safety net
        cmd += ["-t", f"{math.ceil(args.duration) + 30}s"]
    cmd += shlex.split(args.locust_args)
    return cmd + [USER_CLASSES[p] for p in args.protocol_list]


def load_line(args: argparse.Namespace) -> str:
    if args.shape == "step":
        shape = (
            f"step shape: +{args.step_users} users every {args.step_seconds:g} s up to "
            f"{args.users}, {args.duration:g} s"
        )
    else:
        shape = f"{args.users} users (spawn {args.spawn_rate:g}/s) for {args.duration:g} s"
    users = {"rest": "REST", "grpc": "gRPC"}
    protocols = " + ".join(users[p] for p in args.protocol_list)
    think = (
        "no think time"
        if args.wait_max == 0
        else f"think time {args.wait_min:g}-{args.wait_max:g} s"
    )
    mix = "classify 20 : detect 12 : identify 10 : segment 6 : instances 6 : enroll 1"
    ratio = " (users 3:1)" if len(args.protocol_list) == 2 else ""
    retry = "Retry-After honoured" if args.retry_after == "honour" else "Retry-After ignored"
    return f"{shape}; {protocols}{ratio}; {think}; {retry}; task weights {mix}"


def overload_checks(
    args: argparse.Namespace, tally: dict[str, Any], health: HealthLog, failures_other: int
) -> list[str]:
    """The overload verdicts, each 'ok: ...' or 'FAILED: ...'."""

    def verdict(ok: bool, text: str) -> str:
        return f"{'ok' if ok else 'FAILED'}: {text}"

    overloaded = int(tally.get("overloaded", 0))
    without = int(tally.get("overloaded_without_retry_after", 0))
    return [
        verdict(overloaded > 0, f"load went past capacity ({overloaded} overloaded answers)"),
        verdict(without == 0, f"every overloaded answer had Retry-After ({without} without)"),
        verdict(health.green, "/readyz and /livez answered 200 throughout"),
        verdict(failures_other == 0, f"no failures besides overload ({failures_other})"),
    ]


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: the local service and Locust are stopped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = "python -m load_tests.run" + "".join(f" {shlex.quote(a)}" for a in argv_list)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / args.mode
    for old in out.glob(f"{args.mode}[._]*"):  # a previous run's files of this mode
        old.unlink()

    api_key = os.environ.get("VISION_API_KEY") or ("" if args.host else secrets.token_hex(16))
    overrides = dict(item.split("=", 1) for item in args.server_env)
    if api_key:
        overrides.setdefault("VISION_API_KEY", api_key)
    if args.overload:
        overrides.setdefault("VISION_MAX_CONCURRENCY", str(args.max_concurrency))
    if args.host and args.overload:
        print("note: --overload against --host: the target's own VISION_MAX_CONCURRENCY applies")

    env = {
        **os.environ,
        "LOADTEST_SHAPE": args.shape,
        "LOADTEST_STEP_USERS": str(args.step_users),
        "LOADTEST_STEP_SECONDS": str(args.step_seconds),
        "LOADTEST_MAX_USERS": str(args.users),
        "LOADTEST_DURATION": str(args.duration),
        "LOADTEST_SPAWN_RATE": str(args.spawn_rate),
        "LOADTEST_WAIT_MIN": str(args.wait_min),
        "LOADTEST_WAIT_MAX": str(args.wait_max),
        "LOADTEST_RETRY_AFTER": args.retry_after,
        "LOADTEST_TALLY_FILE": str(prefix.with_name(prefix.name + "_tally.json")),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    if api_key:
        env["VISION_API_KEY"] = api_key

    with local_service(overrides) if not args.host else _remote(args.host) as (host, grpc_host):
        if args.grpc_host:
            grpc_host = args.grpc_host
        env["LOADTEST_GRPC_HOST"] = grpc_host
        if args.host:
            target = f"{args.host} (gRPC {grpc_host})"
        else:
            settings = ", ".join(
                f"{k}={v}" for k, v in sorted(overrides.items()) if k != "VISION_API_KEY"
            )
            target = "a local service started by load_tests.run, every bundled model" + (
                f", {settings}" if settings else ""
            )
        poller = HealthPoller(host, args.probe_timeout)
        poller.start()
        cmd = locust_command(args, host, prefix)
        print("running:", shlex.join(cmd), flush=True)
        started = time.monotonic()
        locust_rc = subprocess.run(cmd, env=env, cwd=ROOT, check=False).returncode
        health = poller.stop()
        print(f"locust exited with {locust_rc} after {time.monotonic() - started:.0f} s")

    stats_csv = prefix.with_name(prefix.name + "_stats.csv")
    rows = endpoint_rows(stats_csv)
    if not rows:
        print(f"error: Locust wrote no statistics ({stats_csv})", file=sys.stderr)
        return 2
    tally_file = prefix.with_name(prefix.name + "_tally.json")
    tally = json.loads(tally_file.read_text()) if tally_file.exists() else {}
    failures = next((r.failures for r in rows if r.name == "Aggregated"), 0)
    overload_failures = sum(r.failures for r in rows if r.overloaded)

    title = {"loadtest": "load test", "smoke": "smoke run", "overload": "overload"}[args.mode]
    extra: list[str] = []
    if args.overload:
        limit = overrides.get("VISION_MAX_CONCURRENCY")
        title += f" (VISION_MAX_CONCURRENCY={limit} per worker)" if limit else " (target's limit)"
        checks = overload_checks(args, tally, health, failures - overload_failures)
        extra.append("overload checks: " + "; ".join(checks))
    png = prefix.with_name(prefix.name + ".png")
    plot_history(prefix.with_name(prefix.name + "_stats_history.csv"), png, f"Locust {title}")
    from load_tests.images import describe

    section = summary_markdown(
        title=title,
        command=command,
        target=target,
        load=load_line(args),
        images=describe(),
        prefix=prefix,
        tally=tally,
        health=health,
        relative_to=BENCHMARKS_MD.parent,
        extra=extra,
    )
    prefix.with_name(prefix.name + "_summary.md").write_text(section)
    print("\n" + section)
    if not args.no_append:
        from bench.micro import record

        record(section, BENCHMARKS_MD, HEADING)
        print(f"recorded in {BENCHMARKS_MD}")
    print(f"report: {out}")

    if args.smoke and failures:
        print(f"smoke run FAILED: {failures} failed requests", file=sys.stderr)
        return 1
    if args.overload and any(c.startswith("FAILED") for c in checks):
        print("overload run FAILED: " + "; ".join(checks), file=sys.stderr)
        return 1
    return 0


@contextmanager
def _remote(host: str) -> Iterator[tuple[str, str]]:
    name = urllib.parse.urlparse(host).hostname or "127.0.0.1"
    yield host.rstrip("/"), f"{name}:50051"


if __name__ == "__main__":
    sys.exit(main())
