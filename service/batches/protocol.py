"""Wire objects of the Batch API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from service.protocol import Sparse, Strict

Endpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/responses"]
BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                      "cancelled"]


Window = Annotated[str, Field(pattern=r"^([1-9][0-9]{0,4})(s|m|h)$")]


class CreateBatchRequest(Strict):
    input_file_id: str
    endpoint: Endpoint
    completion_window: Window
    """OpenAI's `24h`; ftserve also takes a shorter window (`90s`, `30m`, `2h`: at most 24 hours), after which
    the batch is `expired` with the lines answered by then in its output file."""
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16)
    output_expires_after: Any = None
    """Accepted; outputs are kept until deleted."""

    @field_validator("completion_window")
    @classmethod
    def _at_most_a_day(cls, window: str) -> str:
        if window_seconds(window) > 24 * 3600:
            raise ValueError("the completion window is at most 24h")
        return window


def window_seconds(window: str) -> int:
    return int(window[:-1]) * {"s": 1, "m": 60, "h": 3600}[window[-1]]


class BatchError(Sparse):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchRequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class Batch(Sparse):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts = Field(default_factory=BatchRequestCounts)
    metadata: dict[str, str] | None = None


class BatchInputLine(Strict):
    """One line of a batch's input file."""

    custom_id: Annotated[str, Field(min_length=1, max_length=512)]
    method: Literal["POST"]
    url: Endpoint
    body: dict[str, Any]
