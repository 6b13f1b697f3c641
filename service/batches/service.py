"""The Batch API's service: create, list, retrieve and cancel batches; the runner (runner.py) runs them.

A batch's life: `validating` (its input file's lines checked) -> `in_progress` (its lines run on the
shared engine, below interactive requests) -> `finalizing` (output and error files written) ->
`completed`; `failed` when the input is unusable; `cancelling` -> `cancelled` on request (the lines
already run are kept in the output).
"""

from __future__ import annotations

import time

from service.batches.protocol import Batch, CreateBatchRequest
from service.db import Database
from service.errors import APIError, Kind
from service.files.service import FileService, new_id
from service.protocol import ListObject

WINDOW_SECONDS = 24 * 3600


class BatchService:
    def __init__(self, db: Database, files: FileService, runner):
        self.db, self.files, self.runner = db, files, runner

    def create(self, req: CreateBatchRequest, project: str) -> Batch:
        row = self.db.get_file(req.input_file_id, project)
        if row is None:
            raise APIError(Kind.INVALID_REQUEST, f"File {req.input_file_id} does not exist.", param="input_file_id",
                           code="file_not_found")
        if row[0]["purpose"] != "batch":
            raise APIError(Kind.INVALID_REQUEST, f"File {req.input_file_id} has purpose '{row[0]['purpose']}'; a "
                           "batch's input file has purpose 'batch'.", param="input_file_id",
                           code="invalid_file_purpose")
        now = int(time.time())
        batch = Batch(id=new_id("batch"), endpoint=req.endpoint, input_file_id=req.input_file_id,
                      completion_window=req.completion_window, status="validating", created_at=now,
                      expires_at=now + WINDOW_SECONDS, metadata=req.metadata)
        self.db.insert_batch(batch.model_dump(), project)
        self.runner.wake()
        return batch

    def get(self, batch_id: str, project: str) -> Batch:
        doc = self.db.get_batch(batch_id, project)
        if doc is None:
            raise APIError(Kind.NOT_FOUND, f"No batch found with id '{batch_id}'.", param="batch_id",
                           code="batch_not_found")
        return Batch(**doc)

    def list(self, project: str, after: str | None, limit: int) -> ListObject[Batch]:
        docs, more = self.db.list_batches(project, after, limit)
        return ListObject[Batch].page([Batch(**d) for d in docs], more)

    def cancel(self, batch_id: str, project: str) -> Batch:
        batch = self.get(batch_id, project)
        if batch.status in ("validating", "in_progress"):
            batch.status, batch.cancelling_at = "cancelling", int(time.time())
            if not self.db.update_batch(batch.model_dump(), expect=("validating", "in_progress")):
                return self.get(batch_id, project)  # it moved on meanwhile
            self.runner.wake()
        elif batch.status not in ("cancelling", "cancelled"):
            raise APIError(Kind.CONFLICT, f"Batch {batch_id} is {batch.status} and cannot be cancelled.",
                           param="batch_id", code="batch_not_cancellable")
        return batch
