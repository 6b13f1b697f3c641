from typing import Annotated

from fastapi import APIRouter, Depends

from service.components import provide
from service.deps import Project
from service.models.service import ModelService
from service.models.protocol import Model
from service.protocol import DeletedObject, ListObject

router = APIRouter(prefix="/v1/models", tags=["models"])
Models = Annotated[ModelService, Depends(provide(ModelService))]


@router.get("", response_model=ListObject[Model])
def list_models(models: Models, project: Project) -> ListObject[Model]:
    return models.list(project)


@router.get("/{model:path}", response_model=Model)
def retrieve_model(models: Models, project: Project, model: str) -> Model:
    return models.get(model, project)


@router.delete("/{model:path}", response_model=DeletedObject)
def delete_model(models: Models, project: Project, model: str) -> DeletedObject:
    return models.delete(model, project)
