"""One helper for every process a test starts: spawn it with its output in a log file, wait until it is
ready (with the log's tail in the error if it exits or never gets there), stop it by its PID (or its own
process group) and never by name."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports on loopback: every socket is held open while the next is chosen (one at a
    time, the kernel may hand the same port out twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


class ManagedProcess:
    def __init__(self, name: str, args: list[str], log: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None, own_group: bool = False, **popen):
        """`own_group`: the process leads a process group of its own, and stopping it stops the group (servers
        whose children must end with them); `popen`: more `subprocess.Popen` arguments (user, group)."""
        self.name, self.args, self.log, self.cwd, self.env = name, args, Path(log), cwd, env
        self.own_group, self.popen = own_group, popen
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> ManagedProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=self.own_group, **self.popen)
        return self

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str = "ready",
                   interval: float = 0.1) -> ManagedProcess:
        """Poll `ready()` until it is true; an error with the log's tail if the process exits first or
        `timeout` passes. `ready` may raise OSError or httpx's errors (nothing listening yet): not ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if ready():
                    return self
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(interval)
        raise RuntimeError(f"{self.name} not {what} in {timeout}s:\n{self.tail()}")

    def send(self, sig: int, group: bool = False) -> None:
        """`sig` to the process (`group`: to the process group it leads)."""
        if self.running:
            (os.killpg if group else os.kill)(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30, group: bool = False) -> None:
        """`sig` (SIGTERM, or the server's own graceful signal) to it (or its group), then SIGKILL if it
        outlives `timeout`."""
        if not self.running:
            return
        self.send(sig, group)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9, as the OS or an operator would (the whole group, for a process that leads one)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            (os.killpg if self.own_group else os.kill)(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
