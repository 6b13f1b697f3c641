"""The Models service: the base model plus every fine-tuned model and checkpoint in the adapter store."""

from __future__ import annotations

from adapters import AdapterError, AdapterNotFound, AdapterStore, InvalidAdapterName
from service.errors import APIError, Kind, model_not_found
from service.models.protocol import Model
from service.protocol import DeletedObject, ListObject
from service.settings import Settings


class ModelService:
    """Model objects name models, never where they are stored: `root` is the base model a model
    descends from (itself for the base), `parent` the model it was trained from."""

    def __init__(self, adapters: AdapterStore, settings: Settings, started_at: int):
        self.adapters, self.settings, self.started_at = adapters, settings, started_at

    def _base(self) -> Model:
        base = self.settings.base_model_name
        return Model(id=base, created=self.started_at, owned_by="ftserve", root=base, parent=None)

    def _adapter(self, meta) -> Model:
        return Model(id=meta.name, created=meta.created_at, owned_by=self.settings.organization,
                     root=meta.base_model or None, parent=meta.parent or meta.base_model or None)

    def list(self) -> ListObject[Model]:
        return ListObject[Model](data=[self._base(), *(self._adapter(meta) for meta in self.adapters.list())])

    def get(self, model_id: str) -> Model:
        if model_id == self.settings.base_model_name:
            return self._base()
        try:
            meta = self.adapters.metadata(model_id)
        except (AdapterError, OSError, ValueError):
            raise model_not_found(model_id) from None
        return self._adapter(meta)

    def delete(self, model_id: str) -> DeletedObject:
        if model_id == self.settings.base_model_name:
            raise APIError(Kind.PERMISSION, f"The base model {model_id!r} cannot be deleted.", param="model",
                           code="model_not_deletable")
        try:
            self.adapters.delete(model_id)
        except (AdapterNotFound, InvalidAdapterName):
            raise model_not_found(model_id) from None
        return DeletedObject(id=model_id, object="model")

