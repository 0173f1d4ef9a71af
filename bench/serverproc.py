"""Start and stop a real `vision serve` subprocess.

The closest thing to production on one machine: `vision serve` (what `make serve` and the
container run) imports the bundled model packages into a private BentoML home and execs
`bentoml serve` on a free port, in its own process group; `start_server` returns once
`/readyz` answers 200. Used by the service tests and by `vision bench`. Standard library only
(urllib), so it works from the serving install.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from service.settings import PROCESS_ENV_DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
MODEL_STORE = ROOT / "model_store"
STARTUP_FAILED = "Application startup failed"  # uvicorn's line when a worker's lifespan raises


def free_port() -> int:
    """A TCP port that was free a moment ago (the server binds it shortly after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """Status code of `GET url`, or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def http_get_text(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read()).decode()


@dataclass
class ServerProcess:
    """A running `bentoml serve` process group."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    grpc_port: int = 0

    def alive(self) -> bool:
        return self.process.poll() is None and http_status(f"{self.url}/livez") == 200

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, then SIGKILL every process of the server if it has not
        exited within `timeout`."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL every process of the server at once (a crash): the process group and every
        descendant, since BentoML starts some workers outside the group (a group kill alone
        left the runner's worker running)."""
        tree = descendants(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def descendants(root: int) -> list[int]:
    """Every process below `root` (read from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def server_env(home: Path, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the server: ours, a private BentoML home, the bundled models."""
    return {
        **PROCESS_ENV_DEFAULTS,
        **os.environ,
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "VISION_MODEL_STORE": str(MODEL_STORE),
        "VISION_DATA_DIR": str(home / "data"),  # a private face gallery
        **(overrides or {}),
    }


def start_server(
    home: Path,
    overrides: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    ready_timeout: float = 180.0,
) -> ServerProcess:
    """Import the models into `home`/bentoml and serve them; returns once `/readyz` is 200.

    `overrides` are environment variables for the server (`VISION_*` settings). The server
    log is `home`/server.log. Raises RuntimeError (with the log tail) if the server exits or
    is not ready within `ready_timeout` seconds.
    """
    home.mkdir(parents=True, exist_ok=True)
    env = server_env(home, {"VISION_GRPC_PORT": str(free_port()), **(overrides or {})})
    port = port or free_port()
    log = home / "server.log"
    with log.open("wb") as out:  # the `make serve` command: port checks, model import, bentoml
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    grpc_port = int(env["VISION_GRPC_PORT"])
    server = ServerProcess(f"http://127.0.0.1:{port}", port, process, log, grpc_port)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log_tail()}")
        if STARTUP_FAILED in server.log_tail():  # BentoML would restart the worker forever
            server.stop()
            raise RuntimeError(f"a server worker failed to start:\n{server.log_tail()}")
        if http_status(f"{server.url}/readyz") == 200:
            return server
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"server not ready in {ready_timeout:.0f} s:\n{server.log_tail()}")
