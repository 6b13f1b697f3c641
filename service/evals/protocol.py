"""Wire objects of the Evals API: evals (a data schema and testing criteria), their runs (a data
source: items, and optionally a model sampled over them) and the runs' output items."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_serializer

from service.protocol import Strict

Metadata = dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]]
RunStatus = Literal["queued", "in_progress", "completed", "canceled", "failed"]


# ---------------------------------------------------------------- data source configs
class CreateCustomDataSourceConfig(Strict):
    type: Literal["custom"]
    item_schema: dict[str, Any]
    """A JSON schema every item of a run must satisfy."""
    include_sample_schema: bool = False


class CustomDataSourceConfig(BaseModel):
    type: Literal["custom"] = "custom"
    schema_: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    """The schema of a grader's namespace: `item`, and `sample` when runs sample a model."""

    model_config = {"populate_by_name": True}


# ---------------------------------------------------------------- graders
class InputMessage(Strict):
    """A message of a model grader's or a completions run's template; `{{item.x}}` and
    `{{sample.output_text}}` are filled in per item."""

    role: Literal["user", "assistant", "system", "developer"]
    content: str
    type: Literal["message"] | None = None


class StringCheckGrader(Strict):
    type: Literal["string_check"]
    name: str
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]


class TextSimilarityGrader(Strict):
    type: Literal["text_similarity"]
    name: str
    input: str
    reference: str
    evaluation_metric: Literal["fuzzy_match", "bleu", "rouge_1", "rouge_2", "rouge_l"]
    pass_threshold: float


class LabelModelGrader(Strict):
    type: Literal["label_model"]
    name: str
    model: str
    """Any model this server serves: the base model, a fine-tuned model or a checkpoint."""
    input: Annotated[list[InputMessage], Field(min_length=1)]
    labels: Annotated[list[str], Field(min_length=1)]
    passing_labels: Annotated[list[str], Field(min_length=1)]


class GraderSamplingParams(Strict):
    seed: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    max_completions_tokens: Annotated[int, Field(ge=1)] | None = None
    reasoning_effort: str | None = None


class ScoreModelGrader(Strict):
    type: Literal["score_model"]
    name: str
    model: str
    input: Annotated[list[InputMessage], Field(min_length=1)]
    range: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None
    """Scores are clamped to this range; default [0, 1]."""
    pass_threshold: float | None = None
    sampling_params: GraderSamplingParams | None = None


Grader = Annotated[StringCheckGrader | TextSimilarityGrader | LabelModelGrader | ScoreModelGrader,
                   Field(discriminator="type")]


# ---------------------------------------------------------------- evals
class CreateEvalRequest(Strict):
    name: str | None = None
    metadata: Metadata | None = Field(default=None, max_length=16)
    data_source_config: CreateCustomDataSourceConfig
    testing_criteria: Annotated[list[Grader], Field(min_length=1)]


class UpdateEvalRequest(Strict):
    name: str | None = None
    metadata: Metadata | None = Field(default=None, max_length=16)


class Eval(BaseModel):
    object: Literal["eval"] = "eval"
    id: str
    name: str
    data_source_config: CustomDataSourceConfig
    testing_criteria: list[Grader]
    created_at: int
    metadata: dict[str, str] | None = None


class DeleteEvalResponse(BaseModel):
    object: Literal["eval.deleted"] = "eval.deleted"
    deleted: bool = True
    eval_id: str


# ---------------------------------------------------------------- run data sources
class SourceRow(BaseModel):
    item: dict[str, Any]
    sample: dict[str, Any] | None = None


class FileContentSource(Strict):
    type: Literal["file_content"]
    content: Annotated[list[SourceRow], Field(min_length=1)]


class FileIdSource(Strict):
    type: Literal["file_id"]
    id: str


Source = Annotated[FileContentSource | FileIdSource, Field(discriminator="type")]


class JsonlRunDataSource(Strict):
    type: Literal["jsonl"]
    source: Source


class TemplateInputMessages(Strict):
    type: Literal["template"]
    template: Annotated[list[InputMessage], Field(min_length=1)]


class ItemReferenceInputMessages(Strict):
    type: Literal["item_reference"]
    item_reference: str
    """`item.x`: the item's field `x` holds the messages (a list of {role, content})."""


class _Sampling(Strict):
    temperature: float = 1.0
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    top_p: float = 1.0
    seed: int = 42
    tools: list[dict[str, Any]] | None = None
    reasoning_effort: str | None = None


class SamplingParams(_Sampling):
    response_format: dict[str, Any] | None = None


class ResponsesSamplingParams(_Sampling):
    text: dict[str, Any] | None = None
    """`{"format": ...}`: the Responses API's `text.format` (text, json_schema, json_object)."""


class _SampledRun(Strict):
    input_messages: Annotated[TemplateInputMessages | ItemReferenceInputMessages,
                              Field(discriminator="type")]
    model: str
    source: Source


class CompletionsRunDataSource(_SampledRun):
    type: Literal["completions"]
    sampling_params: SamplingParams = Field(default_factory=SamplingParams)


class ResponsesRunDataSource(_SampledRun):
    """Samples the model through the Responses API (`/v1/responses`), one response per item."""

    type: Literal["responses"]
    sampling_params: ResponsesSamplingParams = Field(default_factory=ResponsesSamplingParams)


RunDataSource = Annotated[JsonlRunDataSource | CompletionsRunDataSource | ResponsesRunDataSource,
                          Field(discriminator="type")]


# ---------------------------------------------------------------- runs
class CreateEvalRunRequest(Strict):
    name: str | None = None
    metadata: Metadata | None = Field(default=None, max_length=16)
    data_source: RunDataSource


class ResultCounts(BaseModel):
    total: int = 0
    errored: int = 0
    failed: int = 0
    passed: int = 0


class ModelUsage(BaseModel):
    model_name: str
    invocation_count: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0


class CriterionResult(BaseModel):
    testing_criteria: str
    passed: int = 0
    failed: int = 0


class EvalApiError(BaseModel):
    code: str
    message: str


class EvalRun(BaseModel):
    object: Literal["eval.run"] = "eval.run"
    id: str
    eval_id: str
    status: RunStatus
    model: str
    """The model a `completions` run samples; a `jsonl` run's the samples' `model` when they all name
    one, else empty."""
    name: str
    created_at: int
    report_url: str
    result_counts: ResultCounts = Field(default_factory=ResultCounts)
    per_model_usage: list[ModelUsage] = []
    per_testing_criteria_results: list[CriterionResult] = []
    data_source: RunDataSource
    metadata: dict[str, str] | None = None
    error: EvalApiError | None = None

    @field_serializer("data_source")
    def _given_fields(self, source):  # as given: unset options left out, not sent as null
        return source.model_dump(mode="json", exclude_none=True)


class DeleteEvalRunResponse(BaseModel):
    object: Literal["eval.run.deleted"] = "eval.run.deleted"
    deleted: bool = True
    run_id: str


# ---------------------------------------------------------------- output items
class GraderResult(BaseModel):
    name: str
    type: str
    score: float
    passed: bool
    sample: dict[str, Any] | None = None


class SampleMessage(BaseModel):
    role: str
    content: str


class SampleUsage(BaseModel):
    total_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0


class Sample(BaseModel):
    input: list[SampleMessage] = []
    output: list[SampleMessage] = []
    finish_reason: str = ""
    model: str = ""
    usage: SampleUsage = Field(default_factory=SampleUsage)
    error: EvalApiError | None = None
    temperature: float = 1.0
    max_completion_tokens: int = 0
    top_p: float = 1.0
    seed: int = 42


class EvalRunOutputItem(BaseModel):
    object: Literal["eval.run.output_item"] = "eval.run.output_item"
    id: str
    run_id: str
    eval_id: str
    created_at: int
    status: Literal["pass", "fail", "error"]
    datasource_item_id: int
    datasource_item: dict[str, Any]
    results: list[GraderResult]
    sample: Sample
