"""Wire objects every feature shares: request and response bases, lists, deletions, errors.

Each feature keeps its own wire objects in its `protocol` module: one pydantic class per OpenAI
object, fields in the API reference's order; fields that OpenAI does not have are fenced off
under `# ftserve extensions`.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, model_serializer

T = TypeVar("T")


class Strict(BaseModel):
    """Request bodies: unknown fields are rejected, as OpenAI does."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Sparse(BaseModel):
    """Response objects whose optional fields are left out when unset, rather than sent as null
    (the official schema types them as numbers or strings, not nullable)."""

    @model_serializer(mode="wrap")
    def _drop_none(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


class ListObject(Sparse, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None

    @classmethod
    def page(cls, data: list, has_more: bool) -> ListObject:
        """A page of objects with ids, as OpenAI's paginated lists are."""
        return cls(data=data, has_more=has_more, first_id=data[0].id if data else None,
                   last_id=data[-1].id if data else None)


class DeletedObject(BaseModel):
    id: str
    object: str
    deleted: bool = True


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
