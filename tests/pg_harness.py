"""A throwaway PostgreSQL server for tests: ``initdb`` in a temp dir, ``pg_ctl start`` on
127.0.0.1 at a free port (unix socket in the same temp dir, trust auth), a database per test,
``pg_ctl stop -m immediate`` and the temp dir deleted at the end.

The binaries come from the Debian package ``postgresql`` (``/usr/lib/postgresql/<major>/bin``,
the newest major first), or ``$VISION_PG_BINDIR``, or ``initdb`` on ``PATH``. ``initdb``
refuses to run as root, so as root the server runs as the ``postgres`` system user
(``runuser -u postgres --``) in a temp dir that user owns. Usable without pytest::

    server = start_postgres()
    dsn = server.create_database("scratch")  # postgresql://postgres@127.0.0.1:<port>/scratch
    ...
    server.stop()
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

SUPERUSER = "postgres"
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "fsync": "on",  # the durability tests mean it
    "synchronous_commit": "on",
    "log_min_messages": "warning",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, newest major version first."""
    override = os.environ.get("VISION_PG_BINDIR")
    candidates = [Path(override)] if override else []

    def major(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/bin$", path)
        return int(match.group(1)) if match else -1

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major)[::-1]]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    def __init__(self, bindir: Path, root: Path, run_as: str | None) -> None:
        self.bindir = bindir
        self.root = root  # data/, the socket and server.log
        self.run_as = run_as
        self.port = 0
        self.running = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> str:
        command = [str(self.bindir / tool), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            output = done.stdout + done.stderr
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{output}\n{log}")
        return done.stdout

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip

    def start(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self.port = free_port()
            options = [f"-p {self.port}", f"-k {self.root}"]
            options += [f"-c {key}={value}" for key, value in SERVER_SETTINGS.items()]
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                    "-o", " ".join(options), "start", timeout=90,
                )  # fmt: skip
            except RuntimeError:
                if attempt == attempts - 1:  # else: the port was taken meanwhile; another one
                    raise
            else:
                self.running = True
                return

    def admin(self, sql: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as db:
            db.execute(sql)

    def create_database(self, name: str) -> str:
        """A new, empty database (dropped first if it exists); its DSN."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"database name {name!r}: lower-case letters, digits, _")
        self.drop_database(name)
        self.admin(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server (immediately: nothing in it is worth a checkpoint) and delete it."""
        self.running = False
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(bindir: Path | None = None) -> PostgresServer:
    """A running server in a new temp dir, stopped and deleted at exit at the latest.
    ``PostgresUnavailable`` when there are no binaries."""
    bindir = bindir or find_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin, "
            "$VISION_PG_BINDIR or PATH: install the Debian package `postgresql`"
        )
    run_as = None
    as_root = os.geteuid() == 0  # initdb refuses root: the server runs as the postgres user,
    root = Path(tempfile.mkdtemp(prefix="vision-pg-", dir="/tmp" if as_root else None))
    if as_root:  # in a dir it owns under /tmp, which it can reach whatever $TMPDIR is
        run_as = SUPERUSER
        user = pwd.getpwnam(run_as)
        os.chown(root, user.pw_uid, user.pw_gid)
    server = PostgresServer(bindir, root, run_as)
    atexit.register(server.stop)
    try:
        server.init()
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
