"""Runs batches: their lines go through the same chat, completion and responses services as interactive
requests, one batch at a time per server (under a lease: service/leases.py), a few lines at once, at a lower
engine priority (interactive requests are scheduled first).

Every finished line is recorded in the database (`batch_results`, one row per input line) before the
next is counted, so a server that stops mid-batch resumes it at its next start, or another server
after the lease lapses, running only the lines without a result: no line is run, or written to the
output, twice. Output and error files are written at the end in the input's line order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from pydantic import ValidationError

from service.batches.protocol import BatchError, BatchInputLine
from service.batches.store import BatchStore
from service.errors import APIError, Kind, envelope, invalid_request
from service.files.service import FileService
from service.inference.engine import BATCH_PRIORITY
from service.inference.protocol import ChatCompletionRequest, CompletionRequest
from service.ids import new_id
from service.leases import LeasedRunner
from service.responses.protocol import CreateResponse

log = logging.getLogger("ftserve.batches")
MAX_ERRORS = 20


class BatchRunner(LeasedRunner):
    def __init__(self, store: BatchStore, files: FileService, chat, completions, responses, settings):
        super().__init__(store.leases, settings)
        self.store, self.files = store, files
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
        if batch["status"] == "in_progress":
            await self._execute(batch_id, batch["endpoint"], lines)
        await self._finalize(batch_id)

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
    async def _execute(self, batch_id: str, endpoint: str, lines: list[BatchInputLine]) -> None:
        done = {line for line, _, _ in await asyncio.to_thread(self.store.batch_results, batch_id)}
        project = self.store.batch_project(batch_id)  # its lines may use what the batch's project may use
        counts = self._counts(batch_id)
        slots = asyncio.Semaphore(self.settings.batch_concurrency)
        running: set[asyncio.Task] = set()

        async def one(index: int, line: BatchInputLine) -> None:
            try:
                ok, doc = await self._answer(endpoint, line, project)
                await asyncio.to_thread(self.store.add_batch_result, batch_id, index, ok, doc)
                counts["completed" if ok else "failed"] += 1
                self._save(batch_id, request_counts=dict(counts))
            finally:
                slots.release()

        for index, line in enumerate(lines):
            if index in done:
                continue
            await slots.acquire()
            if self.store.get_batch(batch_id)["status"] != "in_progress":  # cancelling: no new lines
                slots.release()
                break
            task = asyncio.create_task(one(index, line))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)

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
            ok = status == 200
            return ok, {"id": new_id("batch_req_"), "custom_id": line.custom_id,
                        "response": {"status_code": status, "request_id": request_id, "body": body}, "error": None}

    # ------------------------------------------------------------------ the end
    async def _finalize(self, batch_id: str) -> None:
        batch = self.store.get_batch(batch_id)
        cancelled = batch["status"] == "cancelling"
        if batch["status"] == "in_progress":
            batch = self._save(batch_id, expect="in_progress", status="finalizing", finalizing_at=int(time.time())) \
                or self.store.get_batch(batch_id)
            cancelled = batch["status"] == "cancelling"
        if batch["status"] not in ("finalizing", "cancelling"):
            return
        results = await asyncio.to_thread(self.store.batch_results, batch_id)
        files = {}
        for ok, name in ((True, "output"), (False, "error")):
            docs = [doc for _, line_ok, doc in results if line_ok == ok]
            if docs:
                data = "".join(json.dumps(d) + "\n" for d in docs).encode()
                files[f"{name}_file_id"] = (await asyncio.to_thread(
                    self.files.create_internal, data, f"{batch_id}_{name}.jsonl", "batch_output",
                    self.store.batch_project(batch_id))).id
        counts = {"total": batch["request_counts"]["total"], "completed": sum(ok for _, ok, _ in results),
                  "failed": sum(not ok for _, ok, _ in results)}
        now = int(time.time())
        end = {"status": "cancelled", "cancelled_at": now} if cancelled else {"status": "completed", "completed_at": now}
        self._save(batch_id, request_counts=counts, **files, **end)

    def _counts(self, batch_id: str) -> dict:
        return dict(self.store.get_batch(batch_id)["request_counts"])

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
