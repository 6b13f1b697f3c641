"""A real Ray head on loopback for tests: `ray start --head --block` from the `ray[default]` package.

Its own temp dir and free ports (all of them: two heads on one machine must not meet); the dashboard (which serves the Job Submission API) bound to
127.0.0.1; usage stats off; token auth off (a `~/.ray/auth_token` would otherwise turn it on).
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` is Ray's single-machine mode: the node advertises and binds
127.0.0.1, not the machine's routable address. `--block` keeps the head's processes under the one
we start, in a process group of their own: stopping that PID (SIGTERM) stops exactly them. Never
`ray stop`, which kills every Ray process on the host.
"""

from __future__ import annotations

import os
import shutil
import signal
import sysconfig
from pathlib import Path

import httpx

from tests.support.process import ManagedProcess, free_ports

ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
       "RAY_JOB_STOP_WAIT_TIME_S": "30",  # a stopped job's trainer has time to checkpoint (pause)
       # the head stops at once on SIGTERM: it would otherwise drain the node first, for up to 30 s, so that
       # Ray Serve can move its replicas (none here)
       "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


class RayHead:
    def __init__(self, root: Path, num_cpus: int = 2):
        self.root, self.num_cpus = Path(root), num_cpus
        # every port Ray would otherwise take from a fixed default, so that heads never collide; all distinct
        names = ("ray-client-server-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                 "metrics-export-port", "runtime-env-agent-port", "node-manager-port", "object-manager-port")
        self.port, self.dashboard_port, *rest = free_ports(2 + len(names))
        self.ports = dict(zip(names, rest))
        self.process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        """The Job Submission API (RAY_ADDRESS for ftserve)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def env(self) -> dict[str, str]:
        return {**ENV, "RAY_ADDRESS": self.address}

    def start(self, timeout: float = 90) -> RayHead:
        ray = shutil.which("ray", path=sysconfig.get_path("scripts")) or shutil.which("ray")
        if ray is None:
            raise RuntimeError("the `ray` command is missing: install the ray extra (ray[default])")
        self.root.mkdir(parents=True, exist_ok=True)
        # the socket paths under the temp dir must stay short (107 bytes)
        self.temp = Path("/tmp") / f"ray-{os.getpid()}-{self.port}"
        args = [ray, "start", "--head", "--block", f"--num-cpus={self.num_cpus}", "--node-ip-address=127.0.0.1",
                f"--port={self.port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                f"--temp-dir={self.temp}", "--disable-usage-stats", *(f"--{k}={v}" for k, v in self.ports.items())]
        # entrypoints run `python`: this environment's, as the ftserve image's is on a Ray cluster
        path = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
        self.process = ManagedProcess("ray head", args, self.root / "ray-head.log", cwd=self.root,
                                      env={**os.environ, **ENV, "PATH": path}, own_group=True).spawn()
        self.process.wait_until(lambda: httpx.get(self.address + "/api/jobs/", timeout=2).status_code == 200,
                                timeout, interval=0.2)
        return self

    def client(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.address)

    def jobs(self) -> list:
        return self.client().list_jobs()

    def stop(self) -> None:
        """SIGTERM to the `ray start --block` we started (it stops the head's processes), then SIGKILL to its
        group: anything of ours that outlived it."""
        if self.process is not None:
            self.process.stop(signal.SIGTERM, timeout=60)
            self.process.kill()
            shutil.rmtree(self.temp, ignore_errors=True)
