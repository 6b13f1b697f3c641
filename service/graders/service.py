"""Graders as rewards: check a grader before it is used, and score model samples with it.

`score` grades many samples at once (a reinforcement job's rollouts): a python grader's samples go to
the sandbox in one process, model graders' judgements to the engine together. A sample the grader
cannot score (a template naming a missing field, a judge's unreadable answer, a python grader that
fails) scores 0 with the error recorded, never failing the caller.
"""

from __future__ import annotations

import ast
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from service.errors import APIError, Kind
from service.evals import graders as computed
from service.evals.protocol import LabelModelGrader, ScoreModelGrader, StringCheckGrader
from service.graders import formula
from service.graders.protocol import (
    GraderErrors, GraderRunMetadata, MultiGrader, PythonGrader, RunGraderRequest, RunGraderResponse,
    TextSimilarityGrader, ValidateGraderRequest, ValidateGraderResponse,
)
from service.graders.sandbox import PythonSandbox, SandboxUnavailable
from service.inference.engine import BATCH_PRIORITY

SAMPLE_FIELDS = ("output_text", "output_json")


@dataclass
class Scored:
    """One sample's reward, its sub-graders' scores (a multi grader's), what failed, and judge tokens."""

    reward: float = 0.0
    sub_rewards: dict[str, float] = field(default_factory=dict)
    errors: GraderErrors = field(default_factory=GraderErrors)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)  # judge model -> token counts


def namespace(output_text: str, item: dict | None) -> dict:
    """What templates and python graders see: `item`, and `sample` with the answer (parsed when JSON)."""
    try:
        output_json = json.loads(output_text)
    except ValueError:
        output_json = None
    return {"item": item or {}, "sample": {"output_text": output_text, "output_json": output_json}}


class GraderService:
    def __init__(self, chat, lane, sandbox: PythonSandbox):
        """`chat`: the chat service model graders ask; `lane`: the offline lane their judgements wait in
        when scoring is offline work (rollouts)."""
        self.chat, self.lane, self.sandbox = chat, lane, sandbox

    # ------------------------------------------------------------------ checks
    def check(self, grader, param: str = "grader", item_keys: set[str] | None = None,
              project: str | None = None) -> None:
        """400 naming the parameter at fault for a grader that cannot run here; with `item_keys`, also
        for a template naming an item field the rows do not have; with `project`, 404 for a judge model
        the project may not use (as for a missing one)."""
        if isinstance(grader, MultiGrader):
            names = grader.named
            try:
                formula.parse(grader.calculate_output, set(names))
            except formula.FormulaError as e:
                raise APIError(Kind.INVALID_REQUEST, str(e), param=f"{param}.calculate_output",
                               code="invalid_grader") from None
            for name, sub in names.items():
                sub_param = f"{param}.graders.{name}" if isinstance(grader.graders, dict) else f"{param}.graders"
                self.check(sub, sub_param, item_keys, project)
            return
        if isinstance(grader, PythonGrader):
            try:
                self.sandbox.check()
            except SandboxUnavailable as e:
                raise APIError(Kind.INVALID_REQUEST, str(e), param=f"{param}.source", code="invalid_grader") from None
            try:
                tree = ast.parse(grader.source)
            except SyntaxError as e:
                raise APIError(Kind.INVALID_REQUEST, f"The python grader's source does not parse: {e.msg} (line "
                               f"{e.lineno})", param=f"{param}.source", code="invalid_grader") from None
            if not any(isinstance(n, ast.FunctionDef) and n.name == "grade" for n in tree.body):
                raise APIError(Kind.INVALID_REQUEST, "The python grader's source must define "
                               "`def grade(sample, item) -> float`.", param=f"{param}.source", code="invalid_grader")
            return
        for where, template in _templates(grader):
            for path in computed.fields(template):
                root, _, rest = path.partition(".")
                if root == "sample" and rest.split(".")[0] in SAMPLE_FIELDS:
                    continue
                if root == "item" and rest and (item_keys is None or rest.split(".")[0] in item_keys):
                    continue
                known = "the rows' fields" if item_keys is None else ", ".join(sorted(item_keys)) or "none"
                raise APIError(Kind.INVALID_REQUEST, f"{{{{{path}}}}} names nothing a grader is given: use "
                               f"{{{{item.<field>}}}} (fields: {known}) or {{{{sample.output_text}}}} / "
                               "{{sample.output_json}}", param=f"{param}.{where}", code="invalid_grader")
        if isinstance(grader, ScoreModelGrader) and grader.range is not None and grader.range[0] >= grader.range[1]:
            raise APIError(Kind.INVALID_REQUEST, "range must be [low, high] with low < high",
                           param=f"{param}.range", code="invalid_grader")
        if isinstance(grader, (ScoreModelGrader, LabelModelGrader)) and project is not None:
            try:
                self.chat.resolver.check_usable(grader.model, project)
            except APIError as e:
                e.param = f"{param}.model"
                raise

    # ------------------------------------------------------------------ scoring
    async def score(self, grader, samples: list[tuple[str, dict | None]], project: str,
                    offline: bool = True) -> list[Scored]:
        """Each (answer, item) scored; rewards in the grader's range, 0 where it failed."""
        spaces = [namespace(text, item) for text, item in samples]
        results = [Scored() for _ in samples]
        if isinstance(grader, MultiGrader):
            tree = formula.parse(grader.calculate_output, set(grader.named))
            for name, sub in grader.named.items():
                for scored, part in zip(results, await self._grade(sub, spaces, project, offline)):
                    scored.sub_rewards[name] = part.reward
                    _merge(scored, part)
            for scored in results:
                try:
                    scored.reward = formula.evaluate(tree, scored.sub_rewards)
                except formula.FormulaError:
                    scored.reward, scored.errors.formula_parse_error = 0.0, True
            return results
        return await self._grade(grader, spaces, project, offline)

    async def _grade(self, grader, spaces: list[dict], project: str, offline: bool) -> list[Scored]:
        if isinstance(grader, PythonGrader):
            cases = [{"sample": s["sample"], "item": s["item"]} for s in spaces]
            try:
                outcomes = await self.sandbox.run(grader.source, cases)
            except SandboxUnavailable as e:
                return [Scored(errors=GraderErrors(python_grader_server_error=True,
                                                   python_grader_server_error_type=str(e))) for _ in spaces]
            return [Scored(reward=o.score) if o.error is None else
                    Scored(errors=GraderErrors(python_grader_runtime_error=True,
                                               python_grader_runtime_error_details=o.error)) for o in outcomes]
        if isinstance(grader, (ScoreModelGrader, LabelModelGrader)):
            return list(await asyncio.gather(*(self._judge(grader, s, project, offline) for s in spaces)))
        out = []
        for space in spaces:
            if isinstance(grader, StringCheckGrader):
                grade = computed.string_check
            else:
                grade = computed.text_similarity
            try:
                out.append(Scored(reward=grade(_with_threshold(grader), space).score))
            except computed.TemplateError:
                out.append(Scored(errors=GraderErrors(invalid_variable_error=True)))
        return out

    async def _judge(self, grader, space: dict, project: str, offline: bool) -> Scored:
        from service.inference.protocol import ChatCompletionRequest

        try:
            body = computed.judge_request(grader, space)
        except computed.TemplateError:
            return Scored(errors=GraderErrors(invalid_variable_error=True))
        weight = await self.lane.enter() if offline else 0
        try:
            answer = await self.chat.create(ChatCompletionRequest.model_validate(body), project,
                                            priority=BATCH_PRIORITY if offline else 0)
        except APIError as e:
            return Scored(errors=GraderErrors(model_grader_server_error=True,
                                              model_grader_server_error_details=e.message))
        finally:
            if offline:
                await self.lane.leave(weight)
        usage = {grader.model: {"prompt_tokens": answer.usage.prompt_tokens,
                                "completion_tokens": answer.usage.completion_tokens,
                                "total_tokens": answer.usage.total_tokens}}
        try:
            result = computed.judge_result(grader, answer.choices[0].message.content or "")
        except (ValueError, KeyError, TypeError):
            return Scored(errors=GraderErrors(model_grader_parse_error=True), usage=usage)
        return Scored(reward=result.score, usage=usage)

    # ------------------------------------------------------------------ the endpoints
    async def run(self, req: RunGraderRequest, project: str) -> RunGraderResponse:
        await asyncio.to_thread(self.check, req.grader, "grader", None, project)  # a judge's manifest: a read
        started = time.perf_counter()
        scored = (await self.score(req.grader, [(req.model_sample, req.item)], project, offline=False))[0]
        judge = req.grader.model if isinstance(req.grader, ScoreModelGrader) else None
        tokens = sum(u["total_tokens"] for u in scored.usage.values())
        return RunGraderResponse(
            reward=scored.reward,
            metadata=GraderRunMetadata(
                errors=scored.errors, execution_time=round(time.perf_counter() - started, 6), name=req.grader.name,
                sampled_model_name=judge, scores=scored.sub_rewards or {req.grader.name: scored.reward},
                token_usage=tokens if scored.usage else None, type=req.grader.type),
            sub_rewards=scored.sub_rewards, model_grader_token_usage_per_model=scored.usage)

    def validate(self, req: ValidateGraderRequest, project: str) -> ValidateGraderResponse:
        self.check(req.grader, project=project)
        return ValidateGraderResponse(grader=req.grader)


def _templates(grader) -> list[tuple[str, str]]:
    """(parameter, template) of every template a grader fills in."""
    if isinstance(grader, (ScoreModelGrader, LabelModelGrader)):
        return [(f"input[{i}].content", m.content) for i, m in enumerate(grader.input)]
    if isinstance(grader, (StringCheckGrader, TextSimilarityGrader)):
        return [("input", grader.input), ("reference", grader.reference)]
    return []


def _with_threshold(grader):
    """Text similarity's pass flag needs a threshold the reward does not: 0.5 where none was given."""
    if isinstance(grader, TextSimilarityGrader) and grader.pass_threshold is None:
        return grader.model_copy(update={"pass_threshold": 0.5})
    return grader


def _merge(into: Scored, part: Scored) -> None:
    for key, value in part.errors.model_dump().items():
        if value and not getattr(into.errors, key):
            setattr(into.errors, key, value)
    for model, usage in part.usage.items():
        mine = into.usage.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        for key, value in usage.items():
            mine[key] += value


def grader_fields(grader: Any) -> list[str]:
    """The item fields a grader's templates name (top level), for checking a job's rows."""
    if isinstance(grader, MultiGrader):
        return sorted({f for sub in grader.named.values() for f in grader_fields(sub)})
    return sorted({p.split(".")[1] for _, t in _templates(grader) for p in computed.fields(t)
                   if p.startswith("item.") and len(p.split(".")) > 1})
