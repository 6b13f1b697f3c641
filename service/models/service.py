"""The Models service: the base model plus the fine-tuned models and checkpoints in the adapter store that
the caller's project owns or was given (see `service.projects.service.Access`)."""

from __future__ import annotations

from adapters import AdapterNotFound, AdapterStore, InvalidAdapterName
from service.errors import APIError, Kind, model_not_found
from service.models.protocol import Model
from service.projects.service import Access
from service.protocol import DeletedObject, ListObject
from service.settings import Settings


class ModelService:
    """Model objects name models, never where they are stored: `root` is the base model a model
    descends from (itself for the base), `parent` the model it was trained from."""

    def __init__(self, adapters: AdapterStore, access: Access, settings: Settings, started_at: int):
        self.adapters, self.access, self.settings, self.started_at = adapters, access, settings, started_at

    def _base(self) -> Model:
        base = self.settings.base_model_name
        return Model(id=base, created=self.started_at, owned_by="ftserve", root=base, parent=None)

    def _adapter(self, meta) -> Model:
        return Model(id=meta.name, created=meta.created_at, owned_by=self.settings.organization,
                     root=meta.base_model or None, parent=meta.parent or meta.base_model or None)

    def list(self, project: str) -> ListObject[Model]:
        mine = self.access.visible(self.adapters.list(), project)
        return ListObject[Model](data=[self._base(), *(self._adapter(meta) for meta in mine)])

    def get(self, model_id: str, project: str) -> Model:
        if model_id == self.settings.base_model_name:
            return self._base()
        return self._adapter(self.access.usable(model_id, project))

    def delete(self, model_id: str, project: str) -> DeletedObject:
        if model_id == self.settings.base_model_name:
            raise APIError(Kind.PERMISSION, f"The base model {model_id!r} cannot be deleted.", param="model",
                           code="model_not_deletable")
        self.access.owned(model_id, project)
        try:
            self.adapters.delete(model_id)
        except (AdapterNotFound, InvalidAdapterName):
            raise model_not_found(model_id) from None
        return DeletedObject(id=model_id, object="model")

