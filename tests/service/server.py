"""A real `ftserve serve` process on loopback, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from openai import OpenAI

from tests.conftest import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports: every socket is held open while the next is chosen (one at a time, the
    kernel may hand the same port out twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


class Server:
    def __init__(self, data_dir: Path, model: Path | None = None, env: dict[str, str] | None = None,
                 api_key: str = "unused", **settings):
        """`api_key`: what `client()` sends by default (a server with keys needs one of them)."""
        self.data_dir, self.port, self.env, self.api_key = Path(data_dir), free_port(), env or {}, api_key
        self.args = [sys.executable, "-m", "service.cli", "serve", "--data-dir", str(data_dir),
                     "--port", str(self.port), "--trainer-threads", "1", "--log-level", "warning"]
        if model is not None:  # served as its directory's name: "ftserve-tiny" for the test model
            self.args += ["--model", str(model)]
        for key, value in settings.items():
            self.args += [f"--{key.replace('_', '-')}", str(value)]
        self.proc: subprocess.Popen | None = None
        self.log = Path(data_dir) / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 120, api_key: str | None = None) -> OpenAI:
        """The official openai client on this server, without retries (a test sees every answer)."""
        return OpenAI(base_url=self.url + "/v1", api_key=api_key or self.api_key, max_retries=0, timeout=timeout)

    def start(self, timeout: float = 120) -> Server:
        return self.spawn().wait_ready(timeout)

    def spawn(self) -> Server:
        """Start the process without waiting (several servers then start at once)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(self.args, cwd=REPO, env=env, stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 120) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return self
                if httpx.get(self.url + "/health", timeout=1).status_code == 503:
                    raise RuntimeError(f"the engine failed to start:\n{self.log.read_text()[-3000:]}")
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """kill -9, as the OS or an operator would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def trainer_pids(run_dir_part: str = "") -> list[int]:
    """Live `python -m trainer` processes, optionally only those whose spec path contains `run_dir_part`."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "trainer" in cmd and "-m" in cmd and run_dir_part in " ".join(cmd):
            if p.info["status"] != psutil.STATUS_ZOMBIE:  # zombies are already dead
                found.append(p.pid)
    return found
