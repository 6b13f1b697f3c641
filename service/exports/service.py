"""Model exports: create one for a model the caller's project owns; read and list them."""

from __future__ import annotations

import time

from service.errors import APIError, Kind
from service.exports.protocol import CreateModelExportRequest, ModelExport
from service.exports.store import ExportStore
from service.ids import new_id
from service.projects.service import Access
from service.protocol import ListObject


class ExportService:
    def __init__(self, store: ExportStore, access: Access, base_model: str, wake):
        self.store, self.access, self.base_model, self.wake = store, access, base_model, wake

    def create(self, req: CreateModelExportRequest, project: str) -> ModelExport:
        if req.model == self.base_model:
            raise APIError(Kind.INVALID_REQUEST, f"{req.model!r} is the base model: there is nothing to merge "
                           "into it. Export a fine-tuned model or checkpoint.", param="model",
                           code="model_not_exportable")
        self.access.owned(req.model, project)  # 404 as missing if not visible; 403 if only shared
        export = ModelExport(id=new_id("mexp_"), model=req.model, created_at=int(time.time()), status="queued")
        self.store.insert(export.model_dump(), project)
        self.wake()
        return export

    def get(self, export_id: str, project: str) -> ModelExport:
        doc = self.store.get(export_id, project)
        if doc is None:
            raise APIError(Kind.NOT_FOUND, f"No such model export: {export_id}", param="export_id",
                           code="model_export_not_found")
        return ModelExport(**doc)

    def list(self, project: str, after: str | None, limit: int) -> ListObject[ModelExport]:
        docs, more = self.store.list(project, after, limit)
        return ListObject[ModelExport].page([ModelExport(**d) for d in docs], more)
