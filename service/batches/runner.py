"""Runs batches: their lines go through the same chat, completion and responses services as interactive
requests, one batch at a time per server (under a lease: service/leases.py), as many lines at once as the
engine takes (the offline lane: service/inference/offline.py), at a lower engine priority (interactive
requests are scheduled first and keep a reserve of the engine's slots).

Answered lines are recorded in the database in bulk (`batch_results`, one row per input line), so a
server that stops mid-batch resumes it at its next start, or another server after the lease lapses,
running only the lines without a result: no line is written to the output twice. Output and error files
are written at the end in the input's line order, streamed from the database a page at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from pydantic import ValidationError

from service.batches.protocol import BatchError, BatchInputLine
from service.batches.store import BatchStore
from service.errors import APIError, Kind, envelope, invalid_request
from service.files.service import FileService
from service.inference.engine import BATCH_PRIORITY
from service.inference.offline import OfflineLane
from service.inference.protocol import ChatCompletionRequest, CompletionRequest
from service.ids import new_id
from service.leases import LeasedRunner
from service.responses.protocol import CreateResponse

log = logging.getLogger("ftserve.batches")
MAX_ERRORS = 20
FLUSH_SECONDS = 0.5
FLUSH_LINES = 256


class BatchRunner(LeasedRunner):
    def __init__(self, store: BatchStore, files: FileService, lane: OfflineLane, chat, completions, responses,
                 settings):
        super().__init__(store.leases, settings)
        self.store, self.files, self.lane = store, files, lane
        self.services = {"/v1/chat/completions": (chat, ChatCompletionRequest),
                         "/v1/completions": (completions, CompletionRequest),
                         "/v1/responses": (responses, CreateResponse)}

    async def run(self, batch_id: str) -> None:
        await self._run(batch_id)

    def fail(self, batch_id: str, error: Exception) -> None:
        self._save(batch_id, status="failed", failed_at=int(time.time()), errors={"object": "list", "data": [
            {"code": "server_error", "message": f"internal error while running the batch: {error}"}]})

    async def _run(self, batch_id: str) -> None:
        batch = self.store.get_batch(batch_id)
        lines, errors = await asyncio.to_thread(self._read_input, batch)
        if batch["status"] == "validating":
            if errors:
                self._save(batch_id, status="failed", failed_at=int(time.time()),
                           errors={"object": "list", "data": [e.model_dump() for e in errors]},
                           request_counts={"total": len(lines) or 0, "completed": 0, "failed": 0})
                return
            batch = self._save(batch_id, expect="validating", status="in_progress", in_progress_at=int(time.time()),
                               request_counts={"total": len(lines), "completed": 0, "failed": 0})
            if batch is None:  # cancelled while validating
                batch = self.store.get_batch(batch_id)
        expired = False
        if batch["status"] == "in_progress":
            expired = await self._execute(batch_id, batch["endpoint"], lines, batch.get("expires_at"))
        await self._finalize(batch_id, lines if expired else None)

    def _read_input(self, batch: dict) -> tuple[list[BatchInputLine], list[BatchError]]:
        lines, errors, seen = [], [], set()
        raw = self.files.path(batch["input_file_id"], None).read_bytes()
        for number, text in enumerate(raw.splitlines(), start=1):
            if not text.strip():
                continue
            try:
                line = BatchInputLine.model_validate_json(text)
            except ValidationError as e:
                err = invalid_request(e.errors())
                errors.append(BatchError(code="invalid_request", message=err.message, param=err.param, line=number))
                continue
            if line.url != batch["endpoint"]:
                errors.append(BatchError(code="mismatched_url", message=f"The line's url {line.url} is not the "
                                         f"batch's endpoint {batch['endpoint']}.", param="url", line=number))
            elif line.custom_id in seen:
                errors.append(BatchError(code="duplicate_custom_id", message=f"custom_id '{line.custom_id}' is "
                                         "used by an earlier line; each line needs its own.", param="custom_id",
                                         line=number))
            seen.add(line.custom_id)
            lines.append(line)
        if not lines and not errors:
            errors.append(BatchError(code="empty_file", message="The input file has no lines."))
        return lines, errors[:MAX_ERRORS]

    # ------------------------------------------------------------------ lines
    async def _execute(self, batch_id: str, endpoint: str, lines: list[BatchInputLine],
                       expires_at: int | None) -> bool:
        """Feed the lines not yet recorded to the engine as fast as the offline lane lets them in; answered
        lines are recorded in bulk (`_Recorder`). A cancel, or the end of the completion window, stops the
        feeding and the lines in the engine; whether the window ended first."""
        done = await asyncio.to_thread(self.store.recorded_lines, batch_id)
        project = self.store.batch_project(batch_id)  # its lines may use what the batch's project may use
        recorder = _Recorder(self, batch_id)

        async def expire() -> None:
            await asyncio.sleep(max(0.0, expires_at - time.time()))
            recorder.stop()
            recorder.expired = True

        window = asyncio.create_task(expire()) if expires_at is not None else None

        async def one(index: int, line: BatchInputLine, weight: int) -> None:
            try:
                recorder.add(index, *await self._answer(endpoint, line, project))
            except Exception as e:  # a server error is the line's, recorded as such, not the batch's
                log.exception("batch %s line %d", batch_id, index + 1)
                recorder.add(index, False, _line_doc(line, 500, envelope(
                    Kind.INTERNAL, f"The server had an error while answering this line: {e}", None, None)))
            finally:
                await self.lane.leave(weight)

        flushing = asyncio.create_task(recorder.loop())
        try:
            for index, line in enumerate(lines):
                if index in done:
                    continue
                if recorder.stopped:
                    break
                weight = await self.lane.enter(_sequences(line))
                if recorder.stopped:
                    await self.lane.leave(weight)
                    break
                task = asyncio.create_task(one(index, line, weight))
                recorder.running.add(task)
                task.add_done_callback(recorder.running.discard)
            await asyncio.gather(*recorder.running, return_exceptions=True)
        finally:
            for task in recorder.running:
                task.cancel()
            await asyncio.gather(*recorder.running, return_exceptions=True)
            flushing.cancel()
            if window is not None:
                window.cancel()
            await asyncio.gather(flushing, *([window] if window else []), return_exceptions=True)
            await recorder.flush()
        return recorder.expired

    async def _answer(self, endpoint: str, line: BatchInputLine, project: str) -> tuple[bool, dict]:
        """One line's output-file line: its response, or its error response, in OpenAI's shape."""
        service, request_type = self.services[endpoint]
        request_id = new_id("req_", 32)
        while True:
            try:
                if line.body.get("stream") or line.body.get("background"):
                    param = "stream" if line.body.get("stream") else "background"
                    raise APIError(Kind.INVALID_REQUEST, f"A batch line cannot set '{param}': the batch runs it "
                                   "and writes its response to the output file.", param=param)
                response = await service.create(request_type.model_validate(line.body), project,
                                                priority=BATCH_PRIORITY)
                status, body = 200, response.model_dump(mode="json")
            except ValidationError as e:
                err = invalid_request(e.errors())
                status, body = err.kind.status, envelope(err.kind, err.message, err.param, err.code)
            except APIError as e:
                if e.kind is Kind.RATE_LIMITED or e.code == "engine_starting":  # interactive traffic first
                    await asyncio.sleep(1)
                    continue
                status, body = e.kind.status, envelope(e.kind, e.message, e.param, e.code)
            return status == 200, _line_doc(line, status, body, request_id)

    # ------------------------------------------------------------------ the end
    async def _finalize(self, batch_id: str, expired_lines: list[BatchInputLine] | None = None) -> None:
        """Write the output and error files and end the batch: `completed`, `cancelled`, or `expired` (given the
        input's lines when its window ended: those without an answer are recorded as `batch_expired`)."""
        batch = self.store.get_batch(batch_id)
        cancelled = batch["status"] == "cancelling"
        if batch["status"] == "in_progress":
            batch = self._save(batch_id, expect="in_progress", status="finalizing", finalizing_at=int(time.time())) \
                or self.store.get_batch(batch_id)
            cancelled = batch["status"] == "cancelling"
        if batch["status"] not in ("finalizing", "cancelling"):
            return
        expired = expired_lines is not None and not cancelled
        if expired:
            answered = await asyncio.to_thread(self.store.recorded_lines, batch_id)
            rows = [(i, False, _expired_doc(line)) for i, line in enumerate(expired_lines) if i not in answered]
            for start in range(0, len(rows), FLUSH_LINES):
                await asyncio.to_thread(self.store.add_batch_results, batch_id, rows[start:start + FLUSH_LINES])
        counted = await asyncio.to_thread(self.store.result_counts, batch_id)
        project = self.store.batch_project(batch_id)
        files = {}
        for ok, name in ((True, "output"), (False, "error")):
            if counted[ok]:  # written as read from the database, a page of lines at a time
                pieces = (json.dumps(doc).encode() + b"\n" for doc in self.store.batch_results(batch_id, ok))
                files[f"{name}_file_id"] = (await asyncio.to_thread(
                    self.files.create_internal, pieces, f"{batch_id}_{name}.jsonl", "batch_output", project)).id
        counts = {"total": batch["request_counts"]["total"], "completed": counted[True], "failed": counted[False]}
        now = int(time.time())
        end = {"status": "cancelled", "cancelled_at": now} if cancelled else \
            {"status": "expired", "expired_at": now} if expired else {"status": "completed", "completed_at": now}
        self._save(batch_id, request_counts=counts, **files, **end)

    def _save(self, batch_id: str, expect: str | None = None, **changes) -> dict | None:
        """Change the batch's document; with `expect`, only while its status is that one (None if not).
        A status changed meanwhile (a cancel) is kept unless `changes` set one."""
        for _ in range(5):
            doc = self.store.get_batch(batch_id)
            if expect is not None and doc["status"] != expect:
                return None
            new = {**doc, **changes}
            if self.store.update_batch(new, expect=(doc["status"],)):
                return new
        raise RuntimeError(f"batch {batch_id}: its status kept changing")


def _line_doc(line: BatchInputLine, status: int, body: dict, request_id: str | None = None) -> dict:
    """A line of the output (or error) file, in OpenAI's shape."""
    return {"id": new_id("batch_req_"), "custom_id": line.custom_id, "response": {
        "status_code": status, "request_id": request_id or new_id("req_", 32), "body": body}, "error": None}


def _expired_doc(line: BatchInputLine) -> dict:
    """An error-file line for a line the completion window ended before (OpenAI's shape)."""
    return {"id": new_id("batch_req_"), "custom_id": line.custom_id, "response": None, "error": {
        "code": "batch_expired", "message": "This request could not be executed before the completion window "
        "expired."}}


def _sequences(line: BatchInputLine) -> int:
    """The sequences a line asks the engine for: its choices times its prompts (a completions list)."""
    n = line.body.get("n") if isinstance(line.body.get("n"), int) else 1
    prompt = line.body.get("prompt")
    prompts = len(prompt) if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int) else 1
    return max(1, n) * prompts


class _Recorder:
    """A batch's answered lines, recorded in bulk: every FLUSH_SECONDS, or sooner once FLUSH_LINES wait, in
    one transaction with the batch's counts. A server killed in between loses only unrecorded answers, and
    those lines run again when the batch resumes: each line is in the output once. Each flush also reads
    the batch's status: once it is no longer in progress (cancelled), the feeding stops and the lines
    still in the engine are stopped (aborted there); they are in neither file."""

    def __init__(self, runner: BatchRunner, batch_id: str):
        self.runner, self.batch_id = runner, batch_id
        self.pending: list[tuple[int, bool, dict]] = []
        self.running: set[asyncio.Task] = set()  # the lines being answered
        self.full = asyncio.Event()
        self.stopped = False
        self.expired = False  # stopped by the end of the completion window

    def add(self, index: int, ok: bool, doc: dict) -> None:
        self.pending.append((index, ok, doc))
        if len(self.pending) >= FLUSH_LINES:
            self.full.set()

    async def loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.full.wait(), FLUSH_SECONDS)
            await self.flush()

    async def flush(self) -> None:
        rows, self.pending = self.pending, []
        self.full.clear()
        if not await asyncio.to_thread(self._record, rows) and not self.stopped:
            self.stop()

    def stop(self) -> None:
        """Feed no more lines, and stop those in the engine (aborted there)."""
        self.stopped = True
        for task in self.running:
            task.cancel()

    def _record(self, rows: list[tuple[int, bool, dict]]) -> bool:
        """Record `rows` and the counts; whether the batch is still in progress."""
        store, counted = self.runner.store, None
        for start in range(0, len(rows), FLUSH_LINES):
            counted = store.add_batch_results(self.batch_id, rows[start:start + FLUSH_LINES])
        doc = store.get_batch(self.batch_id)
        if counted is not None:
            doc = self.runner._save(self.batch_id, request_counts={
                "total": doc["request_counts"]["total"], "completed": counted[True], "failed": counted[False]})
        return doc["status"] == "in_progress"
