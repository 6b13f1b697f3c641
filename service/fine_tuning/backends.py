"""Training backends: where a job's trainer runs. The runner keeps the job's state machine (validate,
claim, record events, publish, succeed/fail/cancel/pause); a backend only launches, watches, stops
and re-attaches. The trainer's JSON-lines events are the contract between them.

- `LocalBackend` (the default): `python -m trainer SPEC` as a subprocess of this server, in its own
  process group, dying with the server.
- `RayBackend` (`--training-backend ray`, `RAY_ADDRESS=http://HEAD:8265`): one Ray job per
  fine-tuning job, submitted through Ray's Job Submission API, running `python -m trainer.remote`,
  which reads its spec, data and latest checkpoint from the object store and writes its
  checkpoints and adapter back there (Ray workers share no disk with the API). The Ray job outlives
  the server that submitted it: its id is recorded, and any server re-attaches to it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger("ftserve.backends")
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class BackendUnavailable(Exception):
    """The backend cannot take a job now (e.g. the Ray head is unreachable): the job waits, queued."""


@dataclass
class Launch:
    """What a backend needs to start a job's trainer."""

    job_id: str
    run_dir: Path  # the local run directory, its spec.json ready (local backend)
    storage: str  # the object store: an s3:// URL or the local data dir (Ray backend)
    model: str  # the base model's path, as the trainer's machine sees it
    training_file: str  # object keys of the job's data
    validation_file: str | None
    attempt: int  # 1 for the first launch of a job, +1 for each resume
    n_workers: int = 1  # data-parallel workers (Ray Train), each taking a share of every batch
    resources: dict | None = None  # the job's own request (num_cpus, num_gpus, memory_gib) over the defaults
    env: dict | None = None  # for the trainer's environment (a reinforcement job's rollout token)


class TrainingRun:
    """One trainer, launched or re-attached: its event lines, its end, and how to stop it."""

    ref: str  # what a server re-attaches with (recorded in the job's row)

    def lines(self) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def wait(self) -> str | None:
        """None when the trainer succeeded; otherwise why it did not, in words."""
        raise NotImplementedError

    async def kill(self) -> None:
        """Cancel: the trainer's whole process tree is gone, no checkpoint."""
        raise NotImplementedError

    async def terminate(self, grace: float) -> None:
        """Pause: the trainer checkpoints after its current step and exits; killed after `grace`."""
        raise NotImplementedError

    async def release(self) -> None:
        """Stop watching (this server lost the job's lease, or is shutting down)."""
        raise NotImplementedError


# ---------------------------------------------------------------------- local
_SERVER_CPUS = os.sched_getaffinity(0)  # the server's CPUs, read before the engine starts


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # every CPU the server may use: never only the core vLLM's CPU worker binds and spins on, whatever
    # affinity it inherited (a trainer seen with only that core got no CPU time for minutes)
    os.sched_setaffinity(0, _SERVER_CPUS)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


class LocalRun(TrainingRun):
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc, self.ref = proc, f"local:{proc.pid}"
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._tail = asyncio.get_running_loop().create_task(self._read_stderr())

    async def _read_stderr(self) -> None:
        async for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace").rstrip())

    async def lines(self) -> AsyncIterator[bytes]:
        async for raw in self.proc.stdout:
            yield raw

    async def wait(self) -> str | None:
        code = await self.proc.wait()
        await self._tail
        if code == 0:
            return None
        tail = "\n".join(self._stderr)[-2000:]
        why = (f"the trainer was killed by signal {signal.Signals(-code).name}"
               + (" (out of memory?)" if code == -signal.SIGKILL else "")) if code < 0 \
            else f"the trainer exited with code {code}"
        return f"{why}. Last output:\n{tail}" if tail else why + "."

    async def kill(self) -> None:
        if self.proc.returncode is None:
            _killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    async def terminate(self, grace: float) -> None:
        if self.proc.returncode is not None:
            return
        _killpg(self.proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), grace)
        except asyncio.TimeoutError:
            await self.kill()

    async def release(self) -> None:
        await self.kill()  # a local trainer cannot be watched from anywhere else


class LocalBackend:
    """`python -m trainer SPEC` as a subprocess of this server."""

    name = "local"
    stops_with_server = True  # its trainers checkpoint and stop when the server does

    def __init__(self, threads: int = 0):
        self.threads = threads

    async def launch(self, launch: Launch) -> TrainingRun:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", **(launch.env or {})}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trainer", str(launch.run_dir / "spec.json"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
            preexec_fn=_die_with_parent, env=env, cwd=str(launch.run_dir), limit=1 << 24,
        )
        return LocalRun(proc)

    async def attach(self, ref: str) -> TrainingRun | None:
        return None  # a local trainer dies with its server (PDEATHSIG): it is launched again

    async def stop(self, ref: str) -> None:
        """A trainer this server may have left behind (should PDEATHSIG have failed): its group killed."""
        pid = int(ref.split(":")[1]) if ref.startswith("local:") else 0
        try:
            cmdline = " ".join(psutil.Process(pid).cmdline()) if pid else ""
        except psutil.Error:
            return
        if "-m trainer" in cmdline:
            _killpg(pid, signal.SIGKILL)


# ---------------------------------------------------------------------- Ray
_RAY_LIVE = ("PENDING", "RUNNING")


class RayRun(TrainingRun):
    def __init__(self, client, ref: str):
        self.client, self.ref = client, ref
        self._released = asyncio.Event()

    async def lines(self) -> AsyncIterator[bytes]:
        """The Ray job's log from its start, line by line, until it ends (or this server lets go)."""
        buffer = ""
        tail = self.client.tail_job_logs(self.ref).__aiter__()
        while not self._released.is_set():
            next_chunk = asyncio.ensure_future(tail.__anext__())
            released = asyncio.ensure_future(self._released.wait())
            done, _ = await asyncio.wait({next_chunk, released}, return_when=asyncio.FIRST_COMPLETED)
            if next_chunk not in done:
                next_chunk.cancel()
                break
            released.cancel()
            try:
                chunk = next_chunk.result()
            except StopAsyncIteration:
                break
            buffer += chunk
            *complete, buffer = buffer.split("\n")
            for line in complete:
                yield line.encode()
        if buffer and not self._released.is_set():
            yield buffer.encode()

    async def wait(self) -> str | None:
        while True:
            info = await asyncio.to_thread(self.client.get_job_info, self.ref)
            status = str(getattr(info.status, "value", info.status))
            if status == "SUCCEEDED":
                return None
            if status not in _RAY_LIVE:
                return f"the Ray job {self.ref} ended {status}: {info.message or 'no message'}"
            if self._released.is_set():
                return "released"
            await asyncio.sleep(0.5)

    async def kill(self) -> None:
        await _stop_until_over(self.client, self.ref, wait=30)

    async def terminate(self, grace: float) -> None:
        # Ray's stop sends SIGTERM (the trainer checkpoints after its current step), then SIGKILL after
        # the head's RAY_JOB_STOP_WAIT_TIME_S
        await _stop_until_over(self.client, self.ref, wait=grace + 5)

    async def release(self) -> None:
        self._released.set()


def _stop_ray_job(client, ref: str) -> None:
    try:
        client.stop_job(ref)
    except RuntimeError as e:  # already over, or unknown
        log.info("stopping Ray job %s: %s", ref, e)


_stopping: dict[str, asyncio.Task] = {}


async def _stop_until_over(client, ref: str, wait: float) -> None:
    """Stop a Ray job, and keep stopping it until it is over: Ray ignores a stop while a job is still
    PENDING (ray-project/ray#58353), so a job cancelled while it waited for resources is stopped as soon
    as it starts, never left to train. Waits for the end at most `wait` seconds; the asking goes on."""
    async def stop() -> None:
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            await asyncio.to_thread(_stop_ray_job, client, ref)
            status = await asyncio.to_thread(client.get_job_status, ref)
            if str(getattr(status, "value", status)) not in _RAY_LIVE:
                return
            await asyncio.sleep(1)

    task = _stopping.get(ref)
    if task is None or task.done():
        task = _stopping[ref] = asyncio.get_running_loop().create_task(stop())
        task.add_done_callback(lambda _: _stopping.pop(ref, None))
    try:
        await asyncio.wait_for(asyncio.shield(task), wait)
    except asyncio.TimeoutError:
        log.warning("Ray job %s not stopped after %.0f s (still pending?); asking again every second", ref, wait)


class RayBackend:
    """One Ray job per fine-tuning job, through Ray's Job Submission API."""

    name = "ray"
    stops_with_server = False  # a Ray job trains on while its server restarts; a server re-attaches

    def __init__(self, address: str | None, resources: dict, env_vars: dict[str, str]):
        self.address, self.resources, self.env_vars = address, resources, env_vars
        self._client = None

    def client(self):
        from ray.job_submission import JobSubmissionClient

        if self._client is None:
            try:
                self._client = JobSubmissionClient(self.address)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise BackendUnavailable(f"the Ray cluster at {self.address or 'RAY_ADDRESS'} is unreachable: "
                                         f"{e}") from None
        return self._client

    async def launch(self, launch: Launch) -> TrainingRun:
        args = ["python", "-m", "trainer.remote", "--storage", launch.storage, "--job", launch.job_id,
                "--model", launch.model, "--training-file", launch.training_file]
        if launch.validation_file:
            args += ["--validation-file", launch.validation_file]
        if launch.n_workers > 1:
            args += ["--workers", str(launch.n_workers)]
        submission_id = f"{launch.job_id}-{launch.attempt}"
        runtime_env = {"env_vars": {**self.env_vars, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
                                    "PYTHONPATH": str(REPO_ROOT), "RAY_DEDUP_LOGS": "0", **(launch.env or {})}}

        wanted = {**self.resources, **(launch.resources or {})}
        memory = int(wanted["memory_gib"] * 2**30) if wanted.get("memory_gib") else None

        def submit() -> str:
            client = self.client()
            try:
                return client.submit_job(entrypoint=" ".join(args), submission_id=submission_id,
                                         runtime_env=runtime_env, metadata={"ftserve_job": launch.job_id},
                                         entrypoint_num_cpus=wanted.get("num_cpus"),
                                         entrypoint_num_gpus=wanted.get("num_gpus"), entrypoint_memory=memory)
            except RuntimeError as e:
                if "already exists" in str(e):  # submitted before a crash: that run is this one
                    return submission_id
                raise BackendUnavailable(f"the Ray cluster refused the job: {e}") from None
            except ConnectionError as e:
                self._client = None
                raise BackendUnavailable(f"the Ray cluster is unreachable: {e}") from None

        return RayRun(self.client(), await asyncio.to_thread(submit))

    async def attach(self, ref: str) -> TrainingRun | None:
        """The Ray job, if it is still going on or ended while nobody watched; None if it was stopped
        (a pause: it resumes in a new Ray job) or is unknown."""
        if not ref.startswith("ftjob-"):
            return None
        try:
            status = await asyncio.to_thread(self.client().get_job_status, ref)
        except RuntimeError:
            return None
        except ConnectionError as e:
            self._client = None
            raise BackendUnavailable(f"the Ray cluster is unreachable: {e}") from None
        return None if str(getattr(status, "value", status)) == "STOPPED" else RayRun(self.client(), ref)

    async def stop(self, ref: str) -> None:
        """Stop a job's Ray job from any server (cancel, pause)."""
        if ref.startswith("ftjob-"):
            await _stop_until_over(self.client(), ref, wait=30)


def open_backend(settings) -> LocalBackend | RayBackend:
    if settings.training_backend == "ray":
        resources = {k: v for k, v in {"num_cpus": settings.ray_num_cpus, "num_gpus": settings.ray_num_gpus,
                                       "memory_gib": settings.ray_memory_gib}.items() if v is not None}
        passed = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "HF_HUB_OFFLINE")
        env = {k: os.environ[k] for k in passed if k in os.environ}
        if settings.trainer_threads:
            env["FTSERVE_TRAINER_THREADS"] = str(settings.trainer_threads)
        return RayBackend(os.environ.get("RAY_ADDRESS"), resources, env)
    return LocalBackend(settings.trainer_threads)
