"""Testing criteria: fill a grader's templates from an item and its sample, then score.

Templates name values as `{{item.field}}` (nested: `{{item.a.b}}`) and `{{sample.output_text}}`
(also `{{sample.output_json}}`). String checks and text similarity are computed here, with the
libraries OpenAI's grader documentation names: rapidfuzz (`fuzzy_match`: `WRatio` on the
default-processed strings), sacrebleu (`bleu`: sentence BLEU with its `zh` tokenizer: Chinese
character by character, other text as its default `13a`) and rouge-score (`rouge_1`, `rouge_2`, `rouge_l`: F-measure, with
a tokenizer that keeps Chinese characters). Model graders are asked through the engine (runner.py);
`judge_request` builds the request and `judge_result` reads the answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from service.evals.protocol import (
    GraderResult, LabelModelGrader, ScoreModelGrader, StringCheckGrader, TextSimilarityGrader,
)

_FIELD = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
_WORD = re.compile(r"[\u3400-\u9fff]|[^\W_]+", re.UNICODE)


class TemplateError(ValueError):
    pass


def lookup(path: str, namespace: dict[str, Any]) -> Any:
    value: Any = namespace
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise TemplateError(f"'{path}' is not in the item (or sample)")
        value = value[part]
    return value


def render(template: str, namespace: dict[str, Any]) -> str:
    def one(match: re.Match) -> str:
        value = lookup(match.group(1), namespace)
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return _FIELD.sub(one, template)


def fields(template: str) -> list[str]:
    """The namespace paths a template names, for checking a grader before any run."""
    return _FIELD.findall(template)


# ---------------------------------------------------------------- graders computed here
def string_check(grader: StringCheckGrader, namespace: dict) -> GraderResult:
    text, ref = render(grader.input, namespace), render(grader.reference, namespace)
    passed = {"eq": text == ref, "ne": text != ref, "like": ref in text, "ilike": ref.lower() in text.lower()}[
        grader.operation]
    return GraderResult(name=grader.name, type=grader.type, score=float(passed), passed=passed)


class _Tokenizer:
    """rouge-score's default tokenizer drops every non-ASCII character: words, and CJK per character."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


def similarity(metric: str, text: str, reference: str) -> float:
    if metric == "fuzzy_match":
        from trainer.evaluation import similarity as fuzzy  # the trainer's before/after measures the same

        return fuzzy(text, reference)
    if metric == "bleu":
        from sacrebleu.metrics import BLEU

        return BLEU(tokenize="zh", effective_order=True).sentence_score(text, [reference]).score / 100
    from rouge_score import rouge_scorer

    name = metric.replace("_", "").replace("rougel", "rougeL")
    return rouge_scorer.RougeScorer([name], tokenizer=_Tokenizer()).score(reference, text)[name].fmeasure


def text_similarity(grader: TextSimilarityGrader, namespace: dict) -> GraderResult:
    score = similarity(grader.evaluation_metric, render(grader.input, namespace),
                       render(grader.reference, namespace))
    return GraderResult(name=grader.name, type=grader.type, score=round(score, 6),
                        passed=score >= grader.pass_threshold)


# ---------------------------------------------------------------- graders that ask a model
def judge_request(grader: LabelModelGrader | ScoreModelGrader, namespace: dict) -> dict:
    """A chat request to the judge; its answer is constrained to the grader's output shape."""
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": render(m.content, namespace)}
                for m in grader.input]
    if isinstance(grader, LabelModelGrader):
        schema = {"type": "object", "properties": {"label": {"type": "string", "enum": grader.labels}},
                  "required": ["label"], "additionalProperties": False}
        body = {"temperature": 0, "max_tokens": 64}
    else:
        low, high = grader.range or (0.0, 1.0)
        scale = sorted({round(low + (high - low) * k / 10, 6) for k in range(11)})  # 11 points: a bounded answer
        schema = {"type": "object", "properties": {"result": {"enum": scale}}, "required": ["result"],
                  "additionalProperties": False}
        params = grader.sampling_params
        body = {"temperature": 0 if params is None or params.temperature is None else params.temperature,
                "max_tokens": (params and params.max_completions_tokens) or 64}
        if params is not None and params.seed is not None:
            body["seed"] = params.seed
        if params is not None and params.top_p is not None:
            body["top_p"] = params.top_p
    return {"model": grader.model, "messages": messages, **body,
            "response_format": {"type": "json_schema", "json_schema": {"name": grader.type, "schema": schema,
                                                                       "strict": True}}}


def judge_result(grader: LabelModelGrader | ScoreModelGrader, output: str) -> GraderResult:
    """The judge's answer as a result; an answer that is not the asked shape raises ValueError."""
    answer = json.loads(output)
    sample = {"output": output}
    if isinstance(grader, LabelModelGrader):
        label = answer["label"]
        if label not in grader.labels:
            raise ValueError(f"the judge answered '{label}', not one of the labels")
        passed = label in grader.passing_labels
        return GraderResult(name=grader.name, type=grader.type, score=float(passed), passed=passed,
                            sample={**sample, "label": label})
    low, high = grader.range or (0.0, 1.0)
    score = min(max(float(answer["result"]), low), high)
    threshold = grader.pass_threshold if grader.pass_threshold is not None else (low + high) / 2
    return GraderResult(name=grader.name, type=grader.type, score=score, passed=score >= threshold, sample=sample)
