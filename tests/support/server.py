"""A real `ftserve serve` process on loopback, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import psutil
from openai import OpenAI

from tests.support.paths import REPO
from tests.support.process import ManagedProcess, free_port


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
        self.process: ManagedProcess | None = None
        self.log = Path(data_dir) / f"server-{self.port}.log"

    @property
    def proc(self):
        """The server's process (a `subprocess.Popen`), once spawned."""
        return None if self.process is None else self.process.proc

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
        self.process = ManagedProcess(f"ftserve on port {self.port}", self.args, self.log, cwd=REPO, env=env).spawn()
        return self

    def wait_ready(self, timeout: float = 120) -> Server:
        def ready() -> bool:
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return True
                if httpx.get(self.url + "/health", timeout=1).status_code == 503:
                    raise RuntimeError(f"the engine failed to start:\n{self.process.tail()}")
            except httpx.HTTPError:
                pass
            return False

        self.process.wait_until(ready, timeout, interval=0.2)
        return self

    def healthy(self) -> bool:
        """Running, and its engine (if any) alive."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            return httpx.get(self.url + "/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """kill -9, as the OS or an operator would."""
        self.process.kill()

    def stop(self) -> None:
        """SIGINT: a graceful shutdown (trainers checkpoint, the engine stops); SIGKILL after 30 s."""
        if self.process is not None:
            self.process.stop(signal.SIGINT, timeout=30)


def trainer_pids(run_dir_part: str = "") -> list[int]:
    """Live `python -m trainer` processes, optionally only those whose spec path contains `run_dir_part`."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "trainer" in cmd and "-m" in cmd and run_dir_part in " ".join(cmd):
            if p.info["status"] != psutil.STATUS_ZOMBIE:  # zombies are already dead
                found.append(p.pid)
    return found
