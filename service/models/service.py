"""The Models service: the base model plus every fine-tuned model and checkpoint in the adapter store."""

from __future__ import annotations

from adapters import AdapterError, AdapterNotFound, AdapterStore, InvalidAdapterName
from service.errors import APIError, Kind, model_not_found
from service.models.protocol import Model
from service.protocol import DeletedObject, ListObject
from service.settings import Settings


class ModelService:
    def __init__(self, adapters: AdapterStore, settings: Settings, base_path: str, started_at: int):
        self.adapters, self.settings, self.base_path, self.started_at = adapters, settings, base_path, started_at

    def _base(self) -> Model:
        return Model(id=self.settings.base_model_name, created=self.started_at, owned_by="ftserve",
                     root=self.base_path, parent=None)

    def list(self) -> ListObject[Model]:
        data = [self._base()]
        for meta in self.adapters.list():
            data.append(Model(id=meta.name, created=meta.created_at, owned_by=self.settings.organization,
                              root=str(self.adapters.resolve(meta.name)), parent=meta.base_model or None))
        return ListObject[Model](data=data)

    def get(self, model_id: str) -> Model:
        if model_id == self.settings.base_model_name:
            return self._base()
        try:
            meta = self.adapters.metadata(model_id)
        except (AdapterError, OSError, ValueError):
            raise model_not_found(model_id) from None
        return Model(id=meta.name, created=meta.created_at, owned_by=self.settings.organization,
                     root=str(self.adapters.resolve(model_id)), parent=meta.base_model or None)

    def delete(self, model_id: str) -> DeletedObject:
        if model_id == self.settings.base_model_name:
            raise APIError(Kind.PERMISSION, f"The base model {model_id!r} cannot be deleted.", param="model",
                           code="model_not_deletable")
        try:
            self.adapters.delete(model_id)
        except (AdapterNotFound, InvalidAdapterName):
            raise model_not_found(model_id) from None
        return DeletedObject(id=model_id, object="model")

