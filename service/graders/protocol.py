"""Wire objects of graders as fine-tuning uses them: the grader types a reinforcement job (and
`POST /v1/fine_tuning/alpha/graders/*`) takes, and the run and validate endpoints' bodies.

`string_check`, `score_model` and `label_model` are the Evals API's classes; `text_similarity` is too,
with `pass_threshold` optional (a reward needs none). `python` and `multi` are new here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from service.evals.protocol import LabelModelGrader, ScoreModelGrader, StringCheckGrader
from service.evals.protocol import TextSimilarityGrader as EvalTextSimilarityGrader
from service.protocol import Strict


class TextSimilarityGrader(EvalTextSimilarityGrader):
    pass_threshold: float | None = None


class PythonGrader(Strict):
    type: Literal["python"]
    name: str
    source: Annotated[str, Field(max_length=256 * 1024)]
    """`def grade(sample: dict, item: dict) -> float`; runs sandboxed (service/graders/sandbox.py)."""
    image_tag: str | None = None
    """Accepted, no effect here: the sandbox offers the standard library and numpy."""


SubGrader = Annotated[StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader,
                      Field(discriminator="type")]


class MultiGrader(Strict):
    type: Literal["multi"]
    name: str
    graders: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], SubGrader] | SubGrader
    """Named sub-graders, as OpenAI's grader guide writes them (`{"name": grader, ...}`, the names being the
    formula's variables); or one grader, as the API reference types it (its variable: its `name`)."""
    calculate_output: str

    @model_validator(mode="after")
    def _named(self) -> MultiGrader:
        if isinstance(self.graders, dict) and not self.graders:
            raise ValueError("graders: give at least one sub-grader")
        return self

    @property
    def named(self) -> dict[str, Any]:
        return self.graders if isinstance(self.graders, dict) else {self.graders.name: self.graders}


Grader = Annotated[StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | MultiGrader,
                   Field(discriminator="type")]


# ---------------------------------------------------------------- /v1/fine_tuning/alpha/graders
class RunGraderRequest(Strict):
    grader: Grader
    model_sample: str
    """The model's answer: `{{sample.output_text}}`, and `{{sample.output_json}}` when it is JSON."""
    item: dict[str, Any] | None = None
    """The dataset row: `{{item.*}}`."""


class GraderErrors(BaseModel):
    formula_parse_error: bool = False
    invalid_variable_error: bool = False
    model_grader_parse_error: bool = False
    model_grader_refusal_error: bool = False
    model_grader_server_error: bool = False
    model_grader_server_error_details: str | None = None
    other_error: bool = False
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    sample_parse_error: bool = False
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False

    @property
    def any(self) -> bool:
        return any(v is True for v in self.model_dump().values())


class GraderRunMetadata(BaseModel):
    errors: GraderErrors
    execution_time: float
    name: str
    sampled_model_name: str | None = None
    scores: dict[str, Any]
    token_usage: int | None = None
    type: str


class RunGraderResponse(BaseModel):
    reward: float
    metadata: GraderRunMetadata
    sub_rewards: dict[str, Any]
    model_grader_token_usage_per_model: dict[str, Any]


class ValidateGraderRequest(Strict):
    grader: Grader


class ValidateGraderResponse(BaseModel):
    grader: Grader | None = None
