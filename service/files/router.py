from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, UploadFile
from fastapi.responses import FileResponse
from fastapi.concurrency import run_in_threadpool

from service.components import provide
from service.deps import Project
from service.files.service import media_type
from service.files.protocol import FileObject
from service.files.service import FileService
from service.protocol import DeletedObject, ListObject

router = APIRouter(prefix="/v1/files", tags=["files"])
Files = Annotated[FileService, Depends(provide(FileService))]


@router.post("", response_model=FileObject)
async def upload_file(files: Files, project: Project, file: UploadFile,
                      purpose: Annotated[str, Form()]) -> FileObject:
    return await run_in_threadpool(files.upload, file.file, file.filename, purpose, project)


@router.get("", response_model=ListObject[FileObject])
def list_files(
    files: Files,
    project: Project,
    purpose: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    order: Literal["asc", "desc"] = "desc",
) -> ListObject[FileObject]:
    return files.list(project, purpose, after, limit, order)


@router.get("/{file_id}", response_model=FileObject)
def retrieve_file(files: Files, project: Project, file_id: str) -> FileObject:
    return files.get(file_id, project)


@router.delete("/{file_id}", response_model=DeletedObject)
def delete_file(files: Files, project: Project, file_id: str) -> DeletedObject:
    return files.delete(file_id, project)


@router.get("/{file_id}/content", response_class=FileResponse)
def retrieve_file_content(files: Files, project: Project, file_id: str) -> FileResponse:
    doc = files.get(file_id, project)
    return FileResponse(files.path(file_id, project), media_type=media_type(doc.filename), filename=doc.filename)
