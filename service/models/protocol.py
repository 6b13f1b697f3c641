"""Wire objects of the Models API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # ftserve extensions (vLLM reports these too)
    root: str | None = None
    parent: str | None = None
