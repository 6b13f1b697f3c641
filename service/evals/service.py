"""The Evals API's service: evals (CRUD), their runs (create, list, retrieve, cancel, delete) and the
runs' output items. The runner (runner.py) executes runs.

Everything a run needs is checked when it is created, so a bad run is a 400 at once rather than a
failed run later: the source's rows (each `{"item": {...}, "sample"?: {...}}`, every item valid
against the eval's item schema), the model it samples, and that every `{{item.x}}` and
`{{sample.x}}` a template names can be filled.
"""

from __future__ import annotations

import time

from jsonschema import Draft202012Validator, SchemaError

from service.evals.sources import bad_request, read_rows
from service.evals.store import ACTIVE_RUN, EvalStore
from service.ids import new_id
from service.errors import APIError, Kind
from service.evals import graders
from service.evals.protocol import (
    CompletionsRunDataSource, ResponsesRunDataSource, CreateEvalRequest, CreateEvalRunRequest, DeleteEvalResponse, DeleteEvalRunResponse,
    Eval, EvalRun, EvalRunOutputItem, LabelModelGrader, ScoreModelGrader, SourceRow,
    TemplateInputMessages, UpdateEvalRequest,
)
from service.evals.runner import EvalRunner
from service.files.service import FileService
from service.models.service import ModelService
from service.protocol import ListObject

# What `{{sample.*}}` holds when a run samples a model (the eval's schema includes it on request).
SAMPLE_SCHEMA = {"type": "object", "properties": {
    "model": {"type": "string"}, "choices": {"type": "array"}, "output_text": {"type": "string"},
    "output_json": {}, "output_tools": {"type": "array"}}, "required": ["model", "output_text"]}


class EvalService:
    def __init__(self, store: EvalStore, files: FileService, models: ModelService, runner: EvalRunner):
        self.store, self.files, self.models, self.runner = store, files, models, runner

    # ---------------------------------------------------------------- evals
    def create(self, req: CreateEvalRequest, project: str) -> Eval:
        config = req.data_source_config
        try:
            Draft202012Validator.check_schema(config.item_schema)
        except SchemaError as e:
            raise bad_request(f"item_schema is not a valid JSON schema: {e.message}", "data_source_config.item_schema")
        namespaces = {"item", "sample"}  # a jsonl run may bring its own samples
        for i, grader in enumerate(req.testing_criteria):
            self._check_templates(grader, namespaces, f"testing_criteria[{i}]")
            if isinstance(grader, LabelModelGrader) and not set(grader.passing_labels) <= set(grader.labels):
                raise bad_request("passing_labels must be among labels.", f"testing_criteria[{i}].passing_labels")
            if isinstance(grader, (LabelModelGrader, ScoreModelGrader)):
                self._check_model(grader.model, f"testing_criteria[{i}].model", project)
        names = [g.name for g in req.testing_criteria]
        if len(set(names)) != len(names):
            raise bad_request("Each testing criterion needs its own name.", "testing_criteria")
        properties, required = {"item": config.item_schema}, ["item"]
        if config.include_sample_schema:
            properties["sample"] = SAMPLE_SCHEMA
            required.append("sample")
        eval_id = new_id("eval_", 32)
        doc = Eval(id=eval_id, name=req.name or eval_id, created_at=int(time.time()), metadata=req.metadata or {},
                   data_source_config={"type": "custom", "schema": {"type": "object", "properties": properties,
                                                                    "required": required}},
                   testing_criteria=req.testing_criteria)
        self.store.insert_eval(doc.model_dump(mode="json", by_alias=True), project)
        return doc

    def get(self, eval_id: str, project: str) -> Eval:
        doc = self.store.get_eval(eval_id, project)
        if doc is None:
            raise APIError(Kind.NOT_FOUND, f"No eval found with id '{eval_id}'.", param="eval_id",
                           code="eval_not_found")
        return Eval.model_validate(doc)

    def list(self, project: str, after: str | None, limit: int, order: str) -> ListObject[Eval]:
        docs, more = self.store.list_evals(project, after, limit, order)
        return ListObject[Eval].page([Eval.model_validate(d) for d in docs], more)

    def update(self, eval_id: str, req: UpdateEvalRequest, project: str) -> Eval:
        doc = self.get(eval_id, project)
        if req.name is not None:
            doc.name = req.name
        if req.metadata is not None:
            doc.metadata = req.metadata
        self.store.update_eval(doc.model_dump(mode="json", by_alias=True))
        return doc

    def delete(self, eval_id: str, project: str) -> DeleteEvalResponse:
        self.get(eval_id, project)
        for run in self.store.list_runs(eval_id, None, 10_000, "asc", None)[0]:
            self._cancel(run)
        self.store.delete_eval(eval_id)
        return DeleteEvalResponse(eval_id=eval_id)

    # ---------------------------------------------------------------- runs
    def create_run(self, eval_id: str, req: CreateEvalRunRequest, base_url: str, project: str) -> EvalRun:
        ev = self.get(eval_id, project)
        source = req.data_source
        rows = read_rows(self.files, source.source, "data_source.source", project)
        validator = Draft202012Validator(ev.data_source_config.schema_["properties"]["item"])
        for n, row in enumerate(rows):
            error = next(iter(validator.iter_errors(row.item)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path)
                raise bad_request(f"Item {n} does not match the eval's item_schema{' at ' + where if where else ''}: "
                           f"{error.message}", "data_source.source", code="invalid_item")
        sampled = isinstance(source, (CompletionsRunDataSource, ResponsesRunDataSource))
        if sampled:
            self._check_model(source.model, "data_source.model", project)
            if isinstance(source.input_messages, TemplateInputMessages):
                for i, message in enumerate(source.input_messages.template):
                    self._check_fields(message.content, {"item"}, rows,
                                       f"data_source.input_messages.template[{i}].content")
            else:
                path = source.input_messages.item_reference
                self._check_fields("{{" + path + "}}", {"item"}, rows, "data_source.input_messages.item_reference")
        elif any(row.sample is None for row in rows) and any(
                f.startswith("sample.") for g in ev.testing_criteria for t in _templates(g) for f in graders.fields(t)):
            raise bad_request("The testing criteria read {{sample.*}}: a jsonl run needs a 'sample' on every row, or a "
                       "'completions' or 'responses' data source to sample a model.", "data_source.source")
        for i, grader in enumerate(ev.testing_criteria):
            for template in _templates(grader):
                if sampled:
                    self._check_fields(template, {"item", "sample"}, rows, f"testing_criteria[{i}]", sampled=True)
        run_id = new_id("evalrun_", 32)
        named = {str((row.sample or {}).get("model", "")) for row in rows}
        model = source.model if sampled else named.pop() if len(named) == 1 else ""
        run = EvalRun(id=run_id, eval_id=eval_id, status="queued", model=model,
                      name=req.name or model or f"{source.type}-run", created_at=int(time.time()),
                      report_url=f"{base_url.rstrip('/')}/v1/evals/{eval_id}/runs/{run_id}",
                      data_source=source, metadata=req.metadata or {})
        self.store.insert_run(run.model_dump(mode="json"))
        self.runner.wake()
        return run

    def get_run(self, eval_id: str, run_id: str, project: str) -> EvalRun:
        self.get(eval_id, project)
        doc = self.store.get_run(run_id)
        if doc is None or doc["eval_id"] != eval_id:
            raise APIError(Kind.NOT_FOUND, f"No run found with id '{run_id}' in eval '{eval_id}'.", param="run_id",
                           code="run_not_found")
        return EvalRun.model_validate(doc)

    def list_runs(self, eval_id: str, project: str, after: str | None, limit: int, order: str,
                  status: str | None) -> ListObject[EvalRun]:
        self.get(eval_id, project)
        docs, more = self.store.list_runs(eval_id, after, limit, order, status)
        return ListObject[EvalRun].page([EvalRun.model_validate(d) for d in docs], more)

    def cancel_run(self, eval_id: str, run_id: str, project: str) -> EvalRun:
        run = self.get_run(eval_id, run_id, project)
        if run.status not in ACTIVE_RUN and run.status != "canceled":
            raise APIError(Kind.CONFLICT, f"Run {run_id} is {run.status} and cannot be canceled.", param="run_id",
                           code="run_not_cancellable")
        return EvalRun.model_validate(self._cancel(self.store.get_run(run_id)))

    def delete_run(self, eval_id: str, run_id: str, project: str) -> DeleteEvalRunResponse:
        self._cancel(self.get_run(eval_id, run_id, project).model_dump(mode="json"))
        self.store.delete_run(run_id)
        return DeleteEvalRunResponse(run_id=run_id)

    def _cancel(self, doc: dict) -> dict:
        for _ in range(5):
            if doc["status"] not in ACTIVE_RUN:
                return doc
            new = {**doc, "status": "canceled"}
            if self.store.update_run(new, expect=ACTIVE_RUN):
                self.runner.wake()
                return new
            doc = self.store.get_run(doc["id"])
        return doc

    # ---------------------------------------------------------------- output items
    def list_items(self, eval_id: str, run_id: str, project: str, after: str | None, limit: int, order: str,
                   status: str | None) -> ListObject[EvalRunOutputItem]:
        self.get_run(eval_id, run_id, project)
        docs, more = self.store.list_output_items(run_id, after, limit, order, status)
        return ListObject[EvalRunOutputItem].page([EvalRunOutputItem.model_validate(d) for d in docs], more)

    def get_item(self, eval_id: str, run_id: str, item_id: str, project: str) -> EvalRunOutputItem:
        self.get_run(eval_id, run_id, project)
        doc = self.store.get_output_item(run_id, item_id)
        if doc is None:
            raise APIError(Kind.NOT_FOUND, f"No output item found with id '{item_id}'.", param="output_item_id",
                           code="output_item_not_found")
        return EvalRunOutputItem.model_validate(doc)

    # ---------------------------------------------------------------- checks
    def _check_model(self, model: str, param: str, project: str) -> None:
        try:
            self.models.get(model, project)
        except APIError:
            raise APIError(Kind.NOT_FOUND, f"The model '{model}' does not exist.", param=param,
                           code="model_not_found") from None

    @staticmethod
    def _check_templates(grader, namespaces: set[str], param: str) -> None:
        for template in _templates(grader):
            for path in graders.fields(template):
                if path.split(".")[0] not in namespaces:
                    raise bad_request(f"'{{{{{path}}}}}' names neither item nor sample.", param)

    @staticmethod
    def _check_fields(template: str, namespaces: set[str], rows: list[SourceRow], param: str,
                      sampled: bool = False) -> None:
        for path in graders.fields(template):
            if path.split(".")[0] not in namespaces:
                raise bad_request(f"'{{{{{path}}}}}' cannot be used here: only {sorted(namespaces)} can.", param)
            if path.startswith("sample.") and sampled:
                continue  # filled by the run
            for n, row in enumerate(rows):
                try:
                    graders.lookup(path, {"item": row.item, "sample": row.sample or {}})
                except graders.TemplateError:
                    raise bad_request(f"Item {n} has no value for '{{{{{path}}}}}'.", param, code="invalid_item") from None


def _templates(grader) -> list[str]:
    if isinstance(grader, (LabelModelGrader, ScoreModelGrader)):
        return [m.content for m in grader.input]
    return [grader.input, grader.reference]
