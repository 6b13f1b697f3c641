from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse, StreamingResponse

from service.components import provide
from service.deps import Admin, Project
from service.models.protocol import (
    ImportModelRequest,
    LoadLoraAdapterRequest,
    Model,
    UnloadLoraAdapterRequest,
)
from service.models.service import ModelService
from service.protocol import DeletedObject, ListObject

router = APIRouter(prefix="/v1/models", tags=["models"])
Models = Annotated[ModelService, Depends(provide(ModelService))]


@router.get("", response_model=ListObject[Model])
def list_models(models: Models, project: Project) -> ListObject[Model]:
    return models.list(project)


@router.post("", response_model=Model)
def import_model(models: Models, project: Project, body: ImportModelRequest) -> Model:
    """An ftserve extension: register an uploaded PEFT adapter archive as a model of the caller's project."""
    return models.import_adapter(models.import_name(body.model), body.file_id, project)


@router.get("/{model:path}/content", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-tar": {}}}})
def download_model(models: Models, project: Project, model: str) -> StreamingResponse:
    """An ftserve extension: the model's PEFT files and `ftserve.json` (metadata, sha256 of every file) as a tar."""
    filename, length, body = models.archive(model, project)
    return StreamingResponse(body, media_type="application/x-tar", headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Content-Length": str(length)})


@router.get("/{model:path}", response_model=Model)
def retrieve_model(models: Models, project: Project, model: str) -> Model:
    return models.get(model, project)


@router.delete("/{model:path}", response_model=DeletedObject)
def delete_model(models: Models, project: Project, model: str) -> DeletedObject:
    return models.delete(model, project)


# vLLM's runtime LoRA endpoints, for the admin key: adapters come from uploads, never from server paths
lora_router = APIRouter(prefix="/v1", tags=["models"])


TEXT = {200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}  # errors stay JSON, as everywhere


@lora_router.post("/load_lora_adapter", responses=TEXT)
def load_lora_adapter(models: Models, _: Admin, body: LoadLoraAdapterRequest) -> PlainTextResponse:
    models.import_adapter(models.lora_name(body.lora_name), models.upload_of(body.lora_path), None,
                          replace=body.load_inplace)
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")


@lora_router.post("/unload_lora_adapter", responses=TEXT)
def unload_lora_adapter(models: Models, _: Admin, body: UnloadLoraAdapterRequest) -> PlainTextResponse:
    models.delete(body.lora_name, None)
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")
