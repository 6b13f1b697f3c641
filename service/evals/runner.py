"""Runs eval runs: sample the model over the items (a `completions` data source), ask the judges
(label and score model graders), grade, and write the output items.

Model requests go through the Batch API's machinery: each stage is one batch (its input file has
one line per item, `custom_id` = `item-N`), so they run on the shared engine below interactive
requests, and a server that stops mid-run resumes the same batch at its next start (the run's
document keeps the batch ids): no item is sampled twice. Output items are written at the end, all
at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, defaultdict

from service.batches.protocol import CreateBatchRequest
from service.evals.sources import read_rows
from service.evals.store import EvalStore
from service.evals import graders
from service.evals.protocol import (
    CompletionsRunDataSource, ResponsesRunDataSource, Eval, EvalRun, EvalRunOutputItem, GraderResult, LabelModelGrader, Sample,
    ScoreModelGrader, SourceRow, StringCheckGrader, TemplateInputMessages,
)
from service.ids import new_id
from service.leases import LeasedRunner

log = logging.getLogger("ftserve.evals")
POLL_SECONDS = 0.5
BATCH_DONE = ("completed", "failed", "expired", "cancelled")


class RunCanceled(Exception):
    pass


class EvalRunner(LeasedRunner):
    def __init__(self, store: EvalStore, files, batches, settings):
        super().__init__(store.leases, settings)
        self.store, self.files, self.batches = store, files, batches

    async def run(self, run_id: str) -> None:
        try:
            await self._run(run_id)
        except RunCanceled:
            pass

    def fail(self, run_id: str, error: Exception) -> None:
        self._save(run_id, status="failed", error={"code": "internal_error", "message": str(error)})

    # ---------------------------------------------------------------- one run
    async def _run(self, run_id: str) -> None:
        if self._save(run_id, expect="queued", status="in_progress") is None and \
                self.store.get_run(run_id)["status"] != "in_progress":
            return
        run = EvalRun.model_validate(self.store.get_run(run_id))
        ev = Eval.model_validate(self.store.get_eval(run.eval_id))
        rows = await asyncio.to_thread(read_rows, self.files, run.data_source.source, "data_source.source", None)
        source = run.data_source
        usage: dict[str, Counter] = defaultdict(Counter)

        samples: list[Sample | None] = [None] * len(rows)
        namespaces = [{"item": row.item, "sample": row.sample or {}} for row in rows]
        if isinstance(source, (CompletionsRunDataSource, ResponsesRunDataSource)):
            responses = isinstance(source, ResponsesRunDataSource)
            requests = [self._sample_request(source, row) for row in rows]
            if responses:
                requests = [_as_response_request(source, r) for r in requests]
            answers = await self._through_batch(run_id, "sample", requests,
                                                "/v1/responses" if responses else "/v1/chat/completions")
            for n, (request, (status, body)) in enumerate(zip(requests, answers)):
                if responses and status == 200:
                    body = _as_chat_completion(body)
                samples[n], namespaces[n]["sample"] = self._sample(source, request, status, body, usage)
        else:
            for n, row in enumerate(rows):
                if row.sample is not None:
                    text = str(row.sample.get("output_text", ""))
                    samples[n] = Sample(output=[{"role": "assistant", "content": text}],
                                        model=str(row.sample.get("model", "")))

        judged = [(g, n) for g in ev.testing_criteria if isinstance(g, (LabelModelGrader, ScoreModelGrader))
                  for n in range(len(rows)) if samples[n] is None or samples[n].error is None]
        verdicts: dict[tuple[str, int], GraderResult | str] = {}
        if judged:
            requests = [graders.judge_request(g, namespaces[n]) for g, n in judged]
            answers = await self._through_batch(run_id, "judge", requests)
            for (grader, n), (status, body) in zip(judged, answers):
                verdicts[grader.name, n] = self._verdict(grader, status, body, usage)

        items = [self._grade(ev, run, n, rows[n], namespaces[n], samples[n], verdicts) for n in range(len(rows))]
        await asyncio.to_thread(self.store.replace_output_items, run_id, [i.model_dump(mode="json") for i in items])
        counts = Counter(i.status for i in items)
        per_criterion = [{"testing_criteria": g.name,
                          "passed": sum(r.passed for i in items for r in i.results if r.name == g.name),
                          "failed": sum(not r.passed for i in items for r in i.results if r.name == g.name)}
                         for g in ev.testing_criteria]
        per_model = [{"model_name": m, "invocation_count": c["invocations"], "prompt_tokens": c["prompt_tokens"],
                      "completion_tokens": c["completion_tokens"], "total_tokens": c["total_tokens"],
                      "cached_tokens": 0} for m, c in usage.items()]
        self._save(run_id, expect="in_progress", status="completed", per_testing_criteria_results=per_criterion,
                   per_model_usage=per_model,
                   result_counts={"total": len(items), "errored": counts["error"], "failed": counts["fail"],
                                  "passed": counts["pass"]})

    @staticmethod
    def _sample_request(source: CompletionsRunDataSource | ResponsesRunDataSource, row: SourceRow) -> dict:
        namespace = {"item": row.item}
        if isinstance(source.input_messages, TemplateInputMessages):
            messages = [{"role": "system" if m.role == "developer" else m.role,
                         "content": graders.render(m.content, namespace)} for m in source.input_messages.template]
        else:
            messages = graders.lookup(source.input_messages.item_reference, namespace)
            if isinstance(messages, str):
                messages = [{"role": "user", "content": messages}]
        params = source.sampling_params
        body = {"model": source.model, "messages": messages, "temperature": params.temperature,
                "top_p": params.top_p, "seed": params.seed}
        if params.max_completion_tokens is not None:
            body["max_completion_tokens"] = params.max_completion_tokens
        if getattr(params, "response_format", None) is not None:
            body["response_format"] = params.response_format
        if params.tools:
            body["tools"] = params.tools
        return body

    @staticmethod
    def _sample(source, request: dict, status: int, body: dict, usage) -> tuple[Sample, dict]:
        params = source.sampling_params
        sample = Sample(input=request.get("messages") or request["input"], model=source.model, temperature=params.temperature,
                        top_p=params.top_p, seed=params.seed,
                        max_completion_tokens=params.max_completion_tokens or 0)
        if status != 200:
            sample.error = {"code": str(body["error"].get("code") or body["error"]["type"]),
                            "message": body["error"]["message"]}
            return sample, {}
        choice = body["choices"][0]
        text = choice["message"].get("content") or ""
        sample.output = [{"role": "assistant", "content": text}]
        sample.finish_reason = choice.get("finish_reason") or ""
        sample.usage = {**{k: body["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
                        "cached_tokens": 0}
        _count(usage, source.model, body)
        try:
            output_json = json.loads(text)
        except ValueError:
            output_json = None
        return sample, {"model": body.get("model", source.model), "choices": body["choices"], "output_text": text,
                        "output_json": output_json, "output_tools": choice["message"].get("tool_calls") or []}

    @staticmethod
    def _verdict(grader, status: int, body: dict, usage) -> GraderResult | str:
        if status != 200:
            return f"the judge {grader.model} answered {status}: {body['error']['message']}"
        _count(usage, grader.model, body)
        try:
            return graders.judge_result(grader, body["choices"][0]["message"].get("content") or "")
        except (ValueError, KeyError, TypeError) as e:
            return f"the judge's answer could not be read: {e}"

    @staticmethod
    def _grade(ev: Eval, run: EvalRun, n: int, row: SourceRow, namespace: dict, sample: Sample | None,
               verdicts: dict) -> EvalRunOutputItem:
        results, error = [], sample.error if sample is not None else None
        for grader in ev.testing_criteria:
            if error is not None:
                break
            try:
                if isinstance(grader, StringCheckGrader):
                    results.append(graders.string_check(grader, namespace))
                elif isinstance(grader, (LabelModelGrader, ScoreModelGrader)):
                    verdict = verdicts[grader.name, n]
                    if isinstance(verdict, str):
                        error = {"code": "grader_error", "message": verdict}
                    else:
                        results.append(verdict)
                else:
                    results.append(graders.text_similarity(grader, namespace))
            except graders.TemplateError as e:
                error = {"code": "invalid_item", "message": str(e)}
        status = "error" if error is not None else "pass" if all(r.passed for r in results) else "fail"
        if sample is None:
            sample = Sample()
        if error is not None and sample.error is None:
            sample.error = error
        return EvalRunOutputItem(id=new_id("outputitem_", 32), run_id=run.id, eval_id=ev.id, created_at=int(time.time()),
                                 status=status, datasource_item_id=n, datasource_item=row.item, results=results,
                                 sample=sample)

    # ---------------------------------------------------------------- through the Batch API
    async def _through_batch(self, run_id: str, stage: str, bodies: list[dict],
                             endpoint: str = "/v1/chat/completions") -> list[tuple[int, dict]]:
        """(status code, body) per request, in order, answered by one batch on the shared engine."""
        batch_id = (self.store.get_run(run_id).get("batches") or {}).get(stage)
        project = self.store.eval_project(self.store.get_run(run_id)["eval_id"])  # the run answers as its eval's project
        if batch_id is None:
            lines = "".join(json.dumps({"custom_id": f"item-{n}", "method": "POST", "url": endpoint,
                                        "body": body}, ensure_ascii=False) + "\n" for n, body in enumerate(bodies))
            file = await asyncio.to_thread(self.files.create_internal, lines.encode(), f"{run_id}_{stage}.jsonl",
                                           "batch", project)
            batch = self.batches.create(CreateBatchRequest(input_file_id=file.id, endpoint=endpoint,
                                                           completion_window="24h",
                                                           metadata={"eval_run": run_id, "stage": stage}), project)
            batch_id = batch.id
            doc = self.store.get_run(run_id)
            if self._save(run_id, expect="in_progress", batches={**(doc.get("batches") or {}), stage: batch_id}) \
                    is None:
                self._cancel_batch(batch_id, project)
                raise RunCanceled
        while True:
            batch = self.batches.get(batch_id, project).model_dump()
            if self.store.get_run(run_id)["status"] != "in_progress":
                self._cancel_batch(batch_id, project)
                raise RunCanceled
            if batch["status"] in BATCH_DONE:
                break
            await self.sleep(POLL_SECONDS)
        if batch["status"] != "completed":
            raise RuntimeError(f"its {stage} batch {batch_id} ended {batch['status']}")
        answers: dict[str, tuple[int, dict]] = {}
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                for line in self.files.path(batch[key], None).read_bytes().splitlines():
                    doc = json.loads(line)
                    answers[doc["custom_id"]] = (doc["response"]["status_code"], doc["response"]["body"])
        return [answers[f"item-{n}"] for n in range(len(bodies))]

    def _cancel_batch(self, batch_id: str, project: str) -> None:
        try:
            self.batches.cancel(batch_id, project)
        except Exception:  # noqa: BLE001 - already finished
            pass

    def _save(self, run_id: str, expect: str | None = None, **changes) -> dict | None:
        """Change the run's document; with `expect`, only while its status is that one (None if not)."""
        for _ in range(5):
            doc = self.store.get_run(run_id)
            if doc is None or (expect is not None and doc["status"] != expect):
                return None
            new = {**doc, **changes}
            if self.store.update_run(new, expect=(doc["status"],)):
                return new
        raise RuntimeError(f"eval run {run_id}: its status kept changing")


def _count(usage, model: str, body: dict) -> None:
    counter = usage[model]
    counter["invocations"] += 1
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        counter[key] += (body.get("usage") or {}).get(key, 0)


def _as_response_request(source: ResponsesRunDataSource, chat: dict) -> dict:
    """A chat request of a `responses` run, as the Responses API takes it (not stored: the run keeps it)."""
    params = source.sampling_params
    body = {"model": chat["model"], "input": chat["messages"], "temperature": chat["temperature"],
            "top_p": chat["top_p"], "seed": chat["seed"], "store": False}
    if params.max_completion_tokens is not None:
        body["max_output_tokens"] = params.max_completion_tokens
    if params.text is not None:
        body["text"] = params.text
    if params.tools:
        body["tools"] = params.tools
    return body


def _as_chat_completion(response: dict) -> dict:
    """A response object read as the chat completion the sample is made from: its text, calls and usage."""
    text = "".join(p.get("text", "") for item in response["output"] if item["type"] == "message"
                   for p in item["content"])
    calls = [{"id": item["call_id"], "type": "function", "function": {
        "name": item["name"], "arguments": item["arguments"]}} for item in response["output"]
        if item["type"] == "function_call"]
    usage = response.get("usage") or {}
    finish = "length" if response["status"] == "incomplete" else "tool_calls" if calls else "stop"
    return {"model": response["model"], "choices": [{"index": 0, "finish_reason": finish, "message": {
        "role": "assistant", "content": text, "tool_calls": calls or None}}],
        "usage": {"prompt_tokens": usage.get("input_tokens", 0), "completion_tokens": usage.get("output_tokens", 0),
                  "total_tokens": usage.get("total_tokens", 0)}}
