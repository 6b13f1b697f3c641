"""The job runner: validates jobs, then trains each on the training backend (backends.py: a local
`python -m trainer` subprocess by default, or a Ray job).

- Validation runs as soon as a job is created; training waits in a FIFO queue served by
  `max_concurrent_jobs` workers (with Ray: jobs this server watches at once).
- A local trainer runs in its own process group (cancel kills the group) and dies with the
  server (PR_SET_PDEATHSIG), so a killed server leaves no orphan training behind. A Ray job
  trains on without its server: the job's lease lapses, and the server that claims it next
  re-attaches to the Ray job (its id is in the job's row) instead of starting another.
- The trainer's JSON events are recorded as they arrive; each checkpoint is published to the
  adapter store as `{fine_tuned_model}:ckpt-step-{N}`; the final adapter as `{fine_tuned_model}`.
- On start, jobs that were running are queued again and resume from their last checkpoint
  (the spec always says `resume_from_checkpoint: latest`); paused jobs stay paused.
- A job's artifacts live in the object store under `jobs/{id}/`: the trainer's spec, each
  checkpoint (with its optimizer state, `trainer_state.pt` written last) and the trainer's events.
  With S3 storage the run directory is a working copy: a server that takes a job over fetches
  the spec, the training files and the latest checkpoint before its trainer starts.
- Every status change is conditional on the status it expects (`JobService.update`), and whatever
  publishes or changes a job's status does so under the job's lock: a cancel (or pause) lands
  either before a step of the runner, which then sees it, or after it, never in between.

Beside it: validation.py (a job's files checked and its plan stored), messages.py (what a trainer event
says in a job's events), report.py (the result file and the before/after eval), the leases in
store.py and service/leases.py, and the events' types in trainer/contract.py.

Why it is long: a job's lifecycle (claim, attach or launch, read events, publish, succeed) and its
control (cancel, pause, lease loss) share one lock per job and the map of trainers this server
watches; split further, each piece would reach into the others' state.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from adapters import AdapterStore, ObjectStore, StorageUnavailable
from service.errors import storage_error
from service.evals.service import EvalService
from service.files.service import FileService
from service.fine_tuning.backends import BackendUnavailable, Launch, LocalBackend, TrainingRun
from service.fine_tuning.messages import evaluation_message, metrics_message
from service.fine_tuning.protocol import CheckpointMetrics, FineTuningJobCheckpoint
from service.fine_tuning.report import JobReport, results_csv
from service.fine_tuning.store import TERMINAL, JobRow, JobStore
from service.fine_tuning.validation import InvalidJob, JobValidator, hyperparameters_of, stage_of
from service.settings import Settings
from service.metrics import Metrics
from trainer.contract import (
    EVENTS_FILE, ROLLOUT_TOKEN_ENV, ROLLOUT_URL_ENV, STATE_FILE, Checkpoint, Done, Error, Evaluation, Info,
    Interrupted, JobKeys, parse_event,
)
from trainer.contract import (
    Metrics as StepMetrics,
)

log = logging.getLogger("ftserve.runner")
POLL_SECONDS = 5.0  # a job queued here wakes a worker at once; this finds those queued elsewhere
BACKEND_RETRY_SECONDS = 5.0  # a job waits this long, queued, before trying an unreachable backend again


class JobRunner:
    def __init__(self, store: JobStore, files: FileService, adapters: AdapterStore, objects: ObjectStore,
                 settings: Settings, base_model_path: Path, backend=None, evals: EvalService | None = None,
                 metrics: Metrics | None = None, graders=None, rollouts=None):
        """`evals`: for each job's before/after eval (None: none); `metrics`: training tokens by project;
        `graders` check reinforcement jobs' graders against their rows; `rollouts` serves their trainers."""
        self.store, self.files, self.adapters, self.settings = store, files, adapters, settings
        self.objects = objects
        self.base_model_path = base_model_path
        self.backend = backend or LocalBackend(settings.trainer_threads)
        self.rollouts = rollouts
        self.validator = JobValidator(files, adapters, objects, settings, base_model_path, self._local_paths, graders)
        self.report = JobReport(store, files, evals) if evals is not None else None
        self.metrics = metrics
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._runs: dict[str, TrainingRun] = {}  # the trainers this server watches, by job
        self._tasks: set[asyncio.Task] = set()
        self._workers: list[asyncio.Task] = []
        self._stopping = False
        self._locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self.training_tokens_per_s: dict[str, float] = {}  # running jobs only
        self.owner = settings.owner  # this server's name in job leases

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        # this server's own jobs from before a restart resume at once; another server's, once its lease expires
        interrupted = [r for r in self.store.with_status("running") if r.owner in (None, self.owner)]
        waiting = self.store.with_status("validating_files", "queued")
        for row in interrupted:  # first: they were already under way
            if self.backend.stops_with_server and row.backend_ref:
                await self.backend.stop(row.backend_ref)  # should PDEATHSIG have failed
            self.store.update(row.id, expect=("running",), status="queued")
            self.store.add_event(row.id, "Server restarted; the job resumes from its last checkpoint"
                                 if self.backend.stops_with_server else
                                 "Server restarted; the job's training is taken up again where it stands")
            self._queue.put_nowait(row.id)
        for row in waiting:
            if row.status == "validating_files":
                self.submit(row.id)
            else:
                self._queue.put_nowait(row.id)
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self.settings.max_concurrent_jobs)]
        self._workers.append(asyncio.create_task(self._leases()))

    async def close(self) -> None:
        """Stop workers and trainers; running jobs stay `running` in the database and resume at next start.

        Trainers get SIGTERM: each writes a checkpoint after its current step and exits; one that has
        not within `shutdown_timeout_seconds` is killed (it then resumes from its previous checkpoint)."""
        self._stopping = True
        # the workers stay alive meanwhile, to record the trainers' last checkpoint and events; a Ray
        # job is left training, for this server or another to re-attach to
        await asyncio.gather(*(run.terminate(self.settings.shutdown_timeout_seconds) if self.backend.stops_with_server
                               else run.release() for run in list(self._runs.values())))
        for task in self._workers + list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._workers, *self._tasks, return_exceptions=True)

    async def _leases(self) -> None:
        """Renew the leases of the jobs training here; stop a trainer whose lease another server took
        (this server was cut off for longer than the lease); queue again the jobs of servers that died."""
        interval = self.settings.job_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                here = list(self._runs)
                held = await asyncio.to_thread(self.store.leases.renew, self.owner, here)
                for job_id in set(here) - held:
                    run, status = self._runs.get(job_id), self.store.get(job_id).status
                    if run is None:
                        continue
                    if status == "running":  # not a cancel or pause: the lease was lost
                        log.warning("job %s: lease taken by another server; letting go of its trainer", job_id)
                        await run.release()
                    elif status == "paused":  # paused through another server
                        self.pause_job(job_id)
                    elif status in TERMINAL:  # cancelled through another server
                        await run.kill()
                for job_id in await asyncio.to_thread(self.store.requeue_expired, self.settings.job_lease_seconds):
                    self.store.add_event(job_id, "The server training this job stopped renewing its lease; "
                                         "the job resumes from its last checkpoint")
                    self._queue.put_nowait(job_id)
            except Exception:  # noqa: BLE001 - e.g. the database briefly unreachable: try again next time
                log.exception("renewing job leases failed")

    def _mine(self, job_id: str, *statuses: str) -> bool:
        """The job is in one of these statuses and leased to this server."""
        row = self.store.row(job_id)  # one read: the status column moves with the job's document
        return row.status in statuses and row.owner == self.owner

    def lock(self, job_id: str) -> asyncio.Lock:
        return self._locks[job_id]

    def run_dir(self, job_id: str) -> Path:
        """The job's local run directory (with S3 storage, a working copy of `jobs/{id}/`)."""
        return self.settings.jobs_dir / job_id

    def enqueue(self, job_id: str) -> None:
        self._queue.put_nowait(job_id)

    def submit(self, job_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._validate(job_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop_job(self, job_id: str) -> None:
        """Cancel: the job is over, so its trainer is killed at once, no checkpoint: here, or (Ray) from
        here whichever server watches it. A local trainer on another server is stopped by that server
        at its next lease renewal."""
        run = self._runs.get(job_id)
        if run is not None:
            await run.kill()
        elif not self.backend.stops_with_server and (ref := self.store.row(job_id).backend_ref):
            await self.backend.stop(ref)

    def pause_job(self, job_id: str) -> None:
        """Pause: the trainer checkpoints after its current step and exits (SIGTERM), in the background;
        a resume trains on from that checkpoint. One not stopped within the shutdown timeout is killed."""
        async def pause() -> None:
            run = self._runs.get(job_id)
            if run is not None:
                await run.terminate(self.settings.shutdown_timeout_seconds)
            elif not self.backend.stops_with_server and (ref := self.store.row(job_id).backend_ref):
                await self.backend.stop(ref)

        task = asyncio.get_running_loop().create_task(pause())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ validating_files -> queued
    async def _validate(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job.status != "validating_files":
            return
        try:
            n_examples, p = await asyncio.to_thread(self.validator.validate, job)
        except InvalidJob as e:
            self.store.fail(job_id, e.code, e.message, e.param)
            return
        except ValueError as e:  # a hyperparameter the trainer's config rejects
            self.store.fail(job_id, "invalid_hyperparameters", str(e), "hyperparameters")
            return
        except StorageUnavailable as e:
            log.warning("job %s: object store unavailable: %s", job_id, e)  # its address stays in the log
            self.store.fail(job_id, "object_store_unavailable", "the object store was unreachable while the job's "
                            "files were read or stored; create the job again once it is back")
            return
        if not self.store.update(job_id, expect=("validating_files",), status="queued", hyperparameters={
                "batch_size": p.batch_size, "learning_rate_multiplier": p.learning_rate_multiplier,
                "n_epochs": p.n_epochs}):
            return  # cancelled meanwhile
        if p.auto_note:
            self.store.add_event(job_id, p.auto_note)
        self.store.add_event(job_id, f"Files validated; {n_examples} examples, {p.total_steps} steps planned. "
                             "Job queued")
        self._queue.put_nowait(job_id)

    # ------------------------------------------------------------------ queued -> running -> done
    async def _worker(self) -> None:
        while True:
            # The database is the queue: the oldest queued job, claimed atomically (on PostgreSQL with
            # FOR UPDATE SKIP LOCKED), so servers sharing a database never train one job twice. The
            # in-memory queue only wakes a worker early; without it, workers look every POLL_SECONDS.
            job_id = await asyncio.to_thread(self.store.claim_next, self.owner)
            if job_id is None:
                try:
                    await asyncio.wait_for(self._queue.get(), POLL_SECONDS)
                except asyncio.TimeoutError:
                    pass
                continue
            try:
                await self._train(job_id)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a failure here must fail the job, never stop the worker
                log.exception("job %s: runner error", job_id)
                if storage_error(e) is not None:
                    self.store.db.release_reserve()  # so that the failure itself can be written down
                    code, message = "insufficient_storage", f"the server ran out of storage space: {e}"
                elif isinstance(e, StorageUnavailable):
                    code, message = "object_store_unavailable", ("the object store was unreachable while the job's "
                                                                 "artifacts were read or stored")
                else:
                    code, message = "server_error", f"internal error while running the job: {e}"
                try:
                    self.store.fail(job_id, code, message)
                except Exception:  # noqa: BLE001 - the database cannot be written even so
                    log.exception("job %s: could not record the failure", job_id)

    def _local_paths(self, job) -> dict:
        """The trainer spec's paths on this server: base model, training files, run directory, and the
        adapter it trains on from."""
        parent = None
        if self.validator.parent(job) is not None:
            parent = str(self.objects.fetch_tree(JobKeys(job.id).parent, self.run_dir(job.id) / "parent"))
        extra = {"rollout_url": self._rollout_url(job.id)} if stage_of(job.method) == "grpo" else {}
        return dict(**extra, model_name_or_path=str(self.base_model_path), output_dir=str(self.run_dir(job.id)),
                    dataset=str(self.files.path(job.training_file, None)),
                    eval_dataset=str(self.files.path(job.validation_file, None)) if job.validation_file else None,
                    adapter_name_or_path=parent)

    def _prepare_run_dir(self, job_id: str) -> Path:
        """The run directory as this server's trainer needs it: the stored spec with this server's paths, and
        (from S3) the latest checkpoint another server made, so that training resumes from it."""
        run_dir = self.run_dir(job_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = {**json.loads(self.objects.get_bytes(JobKeys(job_id).spec)),
                **self._local_paths(self.store.get(job_id))}
        (run_dir / "spec.json").write_text(json.dumps(spec, indent=1))
        if self.objects.local_path(JobKeys(job_id).prefix) is None:  # a local store's checkpoints are in place
            self.objects.fetch_latest_checkpoint(JobKeys(job_id).checkpoints, run_dir / "checkpoints", STATE_FILE)
        return run_dir

    async def _train(self, job_id: str) -> None:
        row = self.store.row(job_id)
        model_name = row.model_name
        try:
            run, replay = await self._start_run(row)
        except BackendUnavailable as e:  # waits, queued, until the backend is back
            await self._wait_for_backend(job_id, str(e))
            return
        self._runs[job_id] = run
        state = _RunState()
        try:
            # a cancel or pause may have landed while the trainer was being started: then it never runs
            if not self._mine(job_id, "running"):
                await run.kill()
                return
            self.store.set_columns(job_id, backend_ref=run.ref,
                                    pid=int(run.ref.split(":")[1]) if run.ref.startswith("local:") else None)
            if replay is None:
                self.store.add_event(job_id, "Fine-tuning job started" + (
                    f" as Ray job {run.ref}" if not self.backend.stops_with_server else ""))
            else:
                self.store.add_event(job_id, f"Re-attached to Ray job {run.ref}")
            await self._read_events(job_id, model_name, run.lines(), state, replay)
            failure = await run.wait()
        finally:
            self._runs.pop(job_id, None)
            self.training_tokens_per_s.pop(job_id, None)
            if self.rollouts is not None:  # a reinforcement job's trainer ended: its rollouts end too
                await self.rollouts.revoke(job_id)
            self.store.set_columns(job_id, pid=None)
            await self._upload_events(job_id, self.run_dir(job_id))
        if self._stopping or not self._mine(job_id, "running"):
            return  # shutting down (resume or re-attach at next start), cancelled, paused or taken over
        if failure is None and state.done is not None:
            await self._succeed(job_id, model_name, state)
        elif state.error is not None:
            self.store.fail(job_id, state.error.code, state.error.message, state.error.param)
        else:
            self.store.fail(job_id, "training_failed", failure or "the trainer ended without a result")

    async def _start_run(self, row: JobRow) -> tuple[TrainingRun, int | None]:
        """The job's trainer: its backend run re-attached (Ray: still training, or ended unwatched), with the
        last step already recorded (events up to it are not recorded again); else a new launch, None."""
        job_id, ref = row.id, row.backend_ref
        if ref is not None:
            run = await self.backend.attach(ref)
            if run is not None:
                return run, max((e["data"]["step"] for e in self.store.events(job_id, "metrics")
                                 if "step" in (e.get("data") or {})), default=0)
        job = self.store.get(job_id)
        attempt = int(ref.rsplit("-", 1)[1]) + 1 if ref and ref.startswith("ftjob-") else 1
        run_dir = await asyncio.to_thread(self._prepare_run_dir, job_id) if self.backend.stops_with_server \
            else self.run_dir(job_id)
        storage = self.settings.storage_url or str(self.settings.data_dir)
        return await self.backend.launch(Launch(
            job_id=job_id, run_dir=run_dir, storage=storage, attempt=attempt,
            model=self.settings.ray_model or str(self.base_model_path),
            training_file=f"files/{job.training_file}",
            validation_file=f"files/{job.validation_file}" if job.validation_file else None,
            n_workers=hyperparameters_of(job.method).n_workers or 1, resources=row.resources,
            env=self._trainer_env(job))), None

    def _trainer_env(self, job) -> dict | None:
        """A reinforcement job's trainer gets its rollout token (a new one for each launch) and this server's
        rollout endpoint."""
        if stage_of(job.method) != "grpo" or self.rollouts is None:
            return None
        return {ROLLOUT_TOKEN_ENV: self.rollouts.issue(job.id), ROLLOUT_URL_ENV: self._rollout_url(job.id)}

    def _rollout_url(self, job_id: str) -> str:
        """Where a reinforcement job's trainer asks this server for graded samples."""
        base = self.settings.rollout_base_url
        if base is None:
            host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.settings.host, self.settings.host)
            base = f"http://{f'[{host}]' if ':' in host else host}:{self.settings.port}"
        return f"{base.rstrip('/')}/internal/rollouts/{job_id}"

    async def _wait_for_backend(self, job_id: str, why: str) -> None:
        async with self.lock(job_id):
            if self.store.update(job_id, expect=("running",), status="queued"):
                self.store.set_columns(job_id, owner=None)
                events = self.store.list_events(job_id, None, 1)[0]
                if not events or not events[0]["message"].startswith("Waiting for the training backend"):
                    self.store.add_event(job_id, f"Waiting for the training backend: {why}", level="warn")
        await asyncio.sleep(BACKEND_RETRY_SECONDS)
        self._queue.put_nowait(job_id)

    async def _read_events(self, job_id: str, model_name: str, stream: AsyncIterator[bytes],
                           state: _RunState, replay: int | None = None) -> None:
        """Record the trainer's events as they come. Re-attached to a run (its log read from the start),
        the events up to step `replay`, recorded before, are passed over."""
        async for raw in stream:
            # a Ray Train worker's lines come prefixed with its (coloured) name: the event starts at a brace
            event = parse_event(raw[max(raw.find(b"{"), 0):])
            if event is None:
                continue  # stray output; stderr carries the diagnostics
            if replay is not None:
                if isinstance(event, (Info, Interrupted)) or (
                        isinstance(event, (StepMetrics, Checkpoint, Evaluation)) and event.step <= replay):
                    continue
                replay = None
            match event:
                case Info() if event.message.startswith("warning: "):  # flagged on the dashboard's curves
                    await self._record(job_id, event.message.removeprefix("warning: "), level="warn",
                                       data=dict(event.model_extra or {}) or None)
                case Info() if (event.model_extra or {}).get("samples"):  # a reinforcement step's answers
                    await self._record(job_id, event.message, data=dict(event.model_extra))
                case Info():
                    await self._record(job_id, event.message)
                case StepMetrics():  # one event per logged step, validation metrics included where measured
                    await self._record_metrics(job_id, event)
                case Evaluation():  # before/after (trainer/evaluation.py); its answers kept for the job's eval
                    # (a message with data: metrics events stay one per training step)
                    await self._record(job_id, evaluation_message(event),
                                       data={"step": event.step, **event.metrics, "answers": event.answers})
                case Checkpoint():
                    await self._publish_checkpoint(job_id, model_name, event)
                case Interrupted():
                    why = "the job was paused" if self.store.get(job_id).status == "paused" else \
                        "a server shutdown; it resumes at the next start"
                    await self._record(job_id, f"Training stopped at step {event.step} for {why}")
                case Done():
                    state.done = event
                case Error():
                    state.error = event

    async def _record_metrics(self, job_id: str, event: StepMetrics) -> None:
        self.training_tokens_per_s[job_id] = event.tokens_per_s
        await self._record(job_id, metrics_message(event), data=event.values, type="metrics")
        remaining = (event.total_steps - event.step) * event.elapsed_s / max(event.step, 1)
        self.store.update(job_id, expect=("running",), trained_tokens=event.tokens,
                          estimated_finish=int(time.time() + remaining))

    async def _record(self, job_id: str, message: str, **kwargs) -> None:
        """Record what the trainer said, unless the job has ended meanwhile: lines it printed before a
        cancel killed it are still being read, and the cancel's own event stays the job's last."""
        async with self.lock(job_id):
            if self.store.get(job_id).status not in TERMINAL:
                self.store.add_event(job_id, message, **kwargs)

    async def _publish_checkpoint(self, job_id: str, model_name: str, event: Checkpoint) -> None:
        """Publish a checkpoint, unless the job has ended (a cancel never lets one through); store it whole
        (optimizer state last), for any server to resume from. A remote trainer stored it already (`key`):
        it is fetched from there."""
        step = event.step
        async with self.lock(job_id):
            if not self._mine(job_id, "running", "paused"):
                return
            if event.key is not None:
                path = await asyncio.to_thread(self.objects.fetch_tree, event.key,
                                               self.run_dir(job_id) / "checkpoints" / f"step-{step}")
            else:
                path = Path(event.path)
                await asyncio.to_thread(self.objects.put_tree, JobKeys(job_id).checkpoint(step), path,
                                        last=STATE_FILE)
            await self._publish_checkpoint_locked(job_id, model_name, step, path, event.metrics)

    async def _upload_events(self, job_id: str, run_dir: Path) -> None:
        """The trainer's own event log, kept with the job's artifacts."""
        log_file, keys = run_dir / EVENTS_FILE, JobKeys(job_id)
        if log_file.is_file() and self.objects.local_path(keys.prefix) is None:
            try:
                await asyncio.to_thread(self.objects.put_file, keys.events, log_file)
            except Exception:  # noqa: BLE001 - the database has the events; this copy is for people
                log.warning("job %s: could not store the trainer's event log", job_id, exc_info=True)

    async def _publish_checkpoint_locked(self, job_id: str, model_name: str, step: int, path: Path,
                                         metrics: dict) -> None:
        name = f"{model_name}:ckpt-step-{step}"
        await asyncio.to_thread(self.adapters.publish, name, path, job_id=job_id, step=step, replace=True,
                                method=self._method(job_id))
        checkpoint = FineTuningJobCheckpoint(
            id=f"ftckpt-{job_id[6:18]}{step}", created_at=int(time.time()), fine_tuned_model_checkpoint=name,
            fine_tuning_job_id=job_id, metrics=CheckpointMetrics(**{**metrics, "step": step}), step_number=step,
        )
        self.store.upsert_checkpoint(job_id, step, checkpoint.model_dump(exclude_none=True))
        self.store.add_event(job_id, f"Checkpoint created at step {step}: {name}")

    def _method(self, job_id: str) -> str:
        return (self.store.get(job_id).method or {}).get("type", "supervised")

    async def _succeed(self, job_id: str, model_name: str, state: _RunState) -> None:
        done = state.done
        adapter = Path(done.adapter_path) if done.adapter_key is None else await asyncio.to_thread(
            self.objects.fetch_tree, done.adapter_key, self.run_dir(job_id) / "adapter")
        async with self.lock(job_id):  # a cancel waits for this, and then finds the job succeeded
            if not self._mine(job_id, "running"):
                return
            await self._publish_checkpoint_locked(job_id, model_name, done.steps, adapter, done.metrics)
            await asyncio.to_thread(self.adapters.publish, model_name, adapter, job_id=job_id, step=done.steps,
                                    replace=True, parent=self.validator.parent(self.store.get(job_id)),
                                    method=self._method(job_id))
            project = self.store.row(job_id).project_id
            results = self.files.create_internal(results_csv(self.store, job_id), "step_metrics.csv",
                                                 "fine-tune-results", project)
            # everything a client reads about a succeeded job is there before its status says so
            self.store.add_event(job_id, f"New fine-tuned model created: {model_name}")
            try:
                if self.report is not None:
                    await asyncio.to_thread(self.report.before_after_eval, self.store.get(job_id), model_name)
            except Exception:  # noqa: BLE001 - the model is there either way; the report is extra
                log.exception("job %s: could not store its before/after evaluation", job_id)
            self.store.add_event(job_id, "The job has successfully completed")
            self.store.update(job_id, expect=("running",), status="succeeded", fine_tuned_model=model_name,
                             finished_at=int(time.time()), trained_tokens=done.trained_tokens,
                             result_files=[results.id], estimated_finish=None)
        if self.metrics is not None:
            self.metrics.training_tokens(project, done.trained_tokens)

class _RunState:
    """What a trainer's events said about how it ended."""

    def __init__(self):
        self.done: Done | None = None
        self.error: Error | None = None


