"""The Batch API's service: create, list, retrieve and cancel batches; the runner (runner.py) runs them.

A batch's life: `validating` (its input file's lines checked) -> `in_progress` (its lines run on the
shared engine, below interactive requests) -> `finalizing` (output and error files written) ->
`completed`; `failed` when the input is unusable; `cancelling` -> `cancelled` on request (the lines
already run are kept in the output); `expired` when its completion window ends first (the lines answered
by then in the output file, the others in the error file as `batch_expired`).
"""

from __future__ import annotations

import time

from service.batches.protocol import Batch, CreateBatchRequest, window_seconds
from service.batches.store import BatchStore
from service.errors import APIError, Kind
from service.files.service import FileService
from service.ids import new_id
from service.protocol import ListObject

class BatchService:
    def __init__(self, store: BatchStore, files: FileService, runner):
        self.store, self.files, self.runner = store, files, runner

    def create(self, req: CreateBatchRequest, project: str) -> Batch:
        file = self.files.find(req.input_file_id, project)
        if file is None:
            raise APIError(Kind.INVALID_REQUEST, f"File {req.input_file_id} does not exist.", param="input_file_id",
                           code="file_not_found")
        if file.purpose != "batch":
            raise APIError(Kind.INVALID_REQUEST, f"File {req.input_file_id} has purpose '{file.purpose}'; a "
                           "batch's input file has purpose 'batch'.", param="input_file_id",
                           code="invalid_file_purpose")
        now = int(time.time())
        batch = Batch(id=new_id("batch-"), endpoint=req.endpoint, input_file_id=req.input_file_id,
                      completion_window=req.completion_window, status="validating", created_at=now,
                      expires_at=now + window_seconds(req.completion_window), metadata=req.metadata)
        self.store.insert_batch(batch.model_dump(), project)
        self.runner.wake()
        return batch

    def get(self, batch_id: str, project: str) -> Batch:
        doc = self.store.get_batch(batch_id, project)
        if doc is None:
            raise APIError(Kind.NOT_FOUND, f"No batch found with id '{batch_id}'.", param="batch_id",
                           code="batch_not_found")
        return Batch(**doc)

    def list(self, project: str, after: str | None, limit: int) -> ListObject[Batch]:
        docs, more = self.store.list_batches(project, after, limit)
        return ListObject[Batch].page([Batch(**d) for d in docs], more)

    def cancel(self, batch_id: str, project: str) -> Batch:
        batch = self.get(batch_id, project)
        if batch.status in ("validating", "in_progress"):
            batch.status, batch.cancelling_at = "cancelling", int(time.time())
            if not self.store.update_batch(batch.model_dump(), expect=("validating", "in_progress")):
                return self.get(batch_id, project)  # it moved on meanwhile
            self.runner.wake()
        elif batch.status not in ("cancelling", "cancelled"):
            raise APIError(Kind.CONFLICT, f"Batch {batch_id} is {batch.status} and cannot be cancelled.",
                           param="batch_id", code="batch_not_cancellable")
        return batch
