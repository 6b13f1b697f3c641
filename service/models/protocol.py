"""Wire objects of the Models API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.protocol import Strict


class ModelUsage(BaseModel):
    """What this replica served with the model since it started (an ftserve extension)."""
    requests: int
    prompt_tokens: int
    completion_tokens: int


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # ftserve extensions (vLLM reports these too)
    root: str | None = None
    parent: str | None = None
    # ftserve extension
    usage: ModelUsage | None = None


# ftserve extensions: adapters in and out
class ImportModelRequest(Strict):
    """`POST /v1/models`: register an uploaded PEFT adapter archive (a file of purpose `adapter`) as a model
    of the caller's project."""
    model: str = Field(min_length=4, max_length=255)
    """The new model's name: `ft:{base model}:` and then the caller's choice (letters, digits, `.` `_` `-` `:`)."""
    file_id: str
    """The uploaded archive: a .tar, .tar.gz or .zip of the adapter folder (adapter_config.json and
    adapter_model.safetensors)."""


class LoadLoraAdapterRequest(Strict):
    """vLLM's `POST /v1/load_lora_adapter`, for the admin key: `lora_path` is the id of an uploaded adapter
    archive (never a path on the server)."""
    lora_name: str
    lora_path: str
    load_inplace: bool = False
    """Replace an adapter of the same name (vLLM's flag); otherwise an existing name is a 400."""


class UnloadLoraAdapterRequest(Strict):
    """vLLM's `POST /v1/unload_lora_adapter`, for the admin key: the adapter is deleted from the store."""
    lora_name: str
    lora_int_id: int | None = None
