"""Wire objects of the Files API."""

from __future__ import annotations

from typing import Literal

from service.protocol import Sparse

FilePurpose = Literal["fine-tune", "fine-tune-results", "batch", "batch_output", "assistants", "user_data", "evals",
                      "vision", "adapter", "model_export"]
UPLOAD_PURPOSES = ("fine-tune", "batch", "assistants", "user_data", "evals", "vision", "adapter")
"""`adapter` (an ftserve extension): a PEFT adapter archive, imported as a model through `POST /v1/models`."""


class FileObject(Sparse):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: FilePurpose
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None = None


