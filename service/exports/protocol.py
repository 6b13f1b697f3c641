"""Wire objects of the model exports API (an ftserve extension: OpenAI has none)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from service.protocol import Strict


class CreateModelExportRequest(Strict):
    model: str
    """A fine-tuned model or checkpoint the caller's project owns."""


class ModelExportError(BaseModel):
    code: str
    message: str


class ModelExport(BaseModel):
    """A fine-tuned model merged into its base model (as `ftserve export`), in the background; its result is a
    file (purpose `model_export`): a tar of the merged model's safetensors shards, config and tokenizer, with
    `ftserve.json` listing each file's sha256."""
    id: str
    object: Literal["model.export"] = "model.export"
    model: str
    created_at: int
    status: Literal["queued", "running", "succeeded", "failed"]
    finished_at: int | None = None
    output_file_id: str | None = None
    error: ModelExportError | None = None
