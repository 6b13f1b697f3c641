"""The Models service: the base model plus the fine-tuned models and checkpoints in the adapter store that
the caller's project owns or was given (see `service.projects.service.Access`); and adapters in and out:
a model's PEFT files as a tar (`archive`), an uploaded PEFT adapter imported as a model (`import_adapter`)."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from adapters import (
    AdapterExists,
    AdapterNotFound,
    AdapterStore,
    InvalidAdapter,
    InvalidAdapterName,
    validate_name,
)
from service.errors import APIError, Kind, adapter_unusable, model_not_found
from service.files.service import FileService
from service.models.archive import CONFIG, read_archive, tar_length, tar_stream
from service.models.imports import Base, check_adapter
from service.metrics import Metrics
from service.models.protocol import Model, ModelUsage
from service.projects.keys import DEFAULT_PROJECT
from service.projects.service import Access
from service.protocol import DeletedObject, ListObject
from service.settings import Settings

MANIFEST = "ftserve.json"  # in a downloaded archive: the model's metadata and each file's sha256
_CHECKPOINT = re.compile(r":ckpt-step-\d+$")


class ModelService:
    """Model objects name models, never where they are stored: `root` is the base model a model
    descends from (itself for the base), `parent` the model it was trained from."""

    def __init__(self, adapters: AdapterStore, access: Access, files: FileService, settings: Settings,
                 model_path: Path, metrics: Metrics, started_at: int):
        self.adapters, self.access, self.files, self.settings = adapters, access, files, settings
        self.metrics = metrics
        self.base = Base(settings.base_model_name, Path(model_path), settings.max_lora_rank)
        self.started_at = started_at

    def _base(self) -> Model:
        base = self.settings.base_model_name
        return Model(id=base, created=self.started_at, owned_by="ftserve", root=base, parent=None,
                     usage=self._usage(base))

    def _usage(self, model: str) -> ModelUsage:
        return ModelUsage(**asdict(self.metrics.usage(model)))

    def _adapter(self, meta) -> Model:
        return Model(id=meta.name, created=meta.created_at, owned_by=self.settings.organization,
                     root=meta.base_model or None, parent=meta.parent or meta.base_model or None,
                     usage=self._usage(meta.name))

    def list(self, project: str) -> ListObject[Model]:
        mine = self.access.visible(self.adapters.list(), project)
        return ListObject[Model](data=[self._base(), *(self._adapter(meta) for meta in mine)])

    def get(self, model_id: str, project: str) -> Model:
        if model_id == self.settings.base_model_name:
            return self._base()
        return self._adapter(self.access.usable(model_id, project))

    def delete(self, model_id: str, project: str | None) -> DeletedObject:
        """Delete a model `project` owns (None: the admin, any model)."""
        if model_id == self.settings.base_model_name:
            raise APIError(Kind.PERMISSION, f"The base model {model_id!r} cannot be deleted.", param="model",
                           code="model_not_deletable")
        if project is not None:
            self.access.owned(model_id, project)
        try:
            self.adapters.delete(model_id)
        except (AdapterNotFound, InvalidAdapterName):
            raise model_not_found(model_id) from None
        return DeletedObject(id=model_id, object="model")

    # ------------------------------------------------------------------------------------ out
    def archive(self, model_id: str, project: str) -> tuple[str, int, Iterator[bytes]]:
        """A fine-tuned model's or checkpoint's PEFT files as a tar: (file name, length, its bytes in pieces)."""
        if model_id == self.settings.base_model_name:
            raise APIError(Kind.INVALID_REQUEST, f"{model_id!r} is the base model: its weights are the "
                           "server's own directory. Fine-tuned models and checkpoints can be downloaded.",
                           param="model", code="model_not_downloadable")
        self.access.usable(model_id, project)
        try:
            meta, files = self.adapters.files(model_id)
        except AdapterNotFound:
            raise model_not_found(model_id) from None
        except InvalidAdapter as e:
            raise adapter_unusable(model_id, str(e)) from None
        manifest = {**asdict(meta), "files": {f.path: {"sha256": f.sha256, "size": f.size} for f in files}}
        manifest.pop("project", None)
        body = json.dumps(manifest, indent=2).encode()
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", model_id) + ".tar"
        return filename, tar_length(files, body), tar_stream(files, MANIFEST, body, meta.created_at)

    # ------------------------------------------------------------------------------------ in
    def import_adapter(self, name: str, file_id: str, project: str | None, *, replace: bool = False) -> Model:
        """Publish the PEFT adapter in an uploaded archive as `name`, owned by `project` (None: the admin, who
        may import any project's upload, into the default project), once it passed every check (see
        service.models.imports); nothing is published otherwise."""
        file = self.files.get(file_id, project)  # 404 for another project's file
        if file.purpose != "adapter":
            raise APIError(Kind.INVALID_REQUEST, f"File {file_id} has purpose {file.purpose!r}; upload the "
                           "adapter archive with purpose 'adapter'.", param="file_id", code="invalid_file_purpose")
        archive = self.files.path(file_id, project)
        with tempfile.TemporaryDirectory(prefix="ftserve-import-") as tmp:
            folder = read_archive(archive, Path(tmp) / "adapter", self.settings.max_adapter_bytes)
            config = check_adapter(folder, self.base)
            config["base_model_name_or_path"] = self.base.name  # as on every adapter served here
            (folder / CONFIG).write_text(json.dumps(config, indent=2))
            try:
                meta = self.adapters.publish(name, folder, method="import", project=project or DEFAULT_PROJECT,
                                             replace=replace)
            except AdapterExists:
                raise APIError(Kind.CONFLICT, f"A model named {name!r} already exists.", param="model",
                               code="model_exists") from None
        return self._adapter(meta)

    def lora_name(self, name: str) -> str:
        """vLLM's lora_name: any valid adapter name but the base model's."""
        if name == self.base.name:
            raise APIError(Kind.INVALID_REQUEST, f"{name!r} is the base model's name.", param="lora_name",
                           code="invalid_model_name")
        try:
            return validate_name(name)
        except InvalidAdapterName as e:
            raise APIError(Kind.INVALID_REQUEST, str(e), param="lora_name", code="invalid_model_name") from None

    @staticmethod
    def upload_of(lora_path: str) -> str:
        """vLLM's lora_path, read here only as the id of an uploaded adapter archive."""
        if not re.fullmatch(r"file-[A-Za-z0-9]+", lora_path):
            raise APIError(Kind.INVALID_REQUEST, "lora_path must be the id of an adapter archive uploaded with "
                           "purpose 'adapter' (file-...): this server reads no paths of its own filesystem.",
                           param="lora_path", code="invalid_lora_path")
        return lora_path

    def import_name(self, name: str) -> str:
        """A name a caller may give an imported model: under `ft:{base}:`, no checkpoint's suffix."""
        prefix = f"ft:{self.base.name}:"
        try:
            validate_name(name)
        except InvalidAdapterName as e:
            raise APIError(Kind.INVALID_REQUEST, str(e), param="model", code="invalid_model_name") from None
        if not name.startswith(prefix) or len(name) == len(prefix) or "/" in name or _CHECKPOINT.search(name):
            raise APIError(Kind.INVALID_REQUEST, f"Name the model {prefix}<your name> (letters, digits and . _ - :, "
                           "not ending in :ckpt-step-N).", param="model", code="invalid_model_name")
        return name
