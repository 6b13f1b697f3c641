from typing import Annotated

from fastapi import APIRouter, Depends, Query

from service.components import provide
from service.deps import Project
from service.exports.protocol import CreateModelExportRequest, ModelExport
from service.exports.service import ExportService
from service.protocol import ListObject

router = APIRouter(prefix="/v1/model_exports", tags=["models"])
Exports = Annotated[ExportService, Depends(provide(ExportService))]


@router.post("", response_model=ModelExport)
def create_model_export(exports: Exports, project: Project, body: CreateModelExportRequest) -> ModelExport:
    return exports.create(body, project)


@router.get("", response_model=ListObject[ModelExport])
def list_model_exports(exports: Exports, project: Project, after: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=100)] = 20) -> ListObject[ModelExport]:
    return exports.list(project, after, limit)


@router.get("/{export_id}", response_model=ModelExport)
def retrieve_model_export(exports: Exports, project: Project, export_id: str) -> ModelExport:
    return exports.get(export_id, project)
