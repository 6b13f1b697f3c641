"""What a succeeded job leaves for people to read: its metrics by step as a result file, and the trainer's
before/after answers as an eval with two runs (Evals API)."""

from __future__ import annotations

import csv
import io

from service.evals.protocol import CreateEvalRequest, CreateEvalRunRequest
from service.evals.service import EvalService
from service.files.service import FileService
from service.fine_tuning.protocol import FineTuningJob
from service.fine_tuning.store import JobStore
from trainer.data import load_dataset
from trainer.evaluation import MAX_PROBES


def results_csv(store: JobStore, job_id: str) -> bytes:
    """The job's metrics by step as CSV: its result file, as OpenAI's `step_metrics.csv`."""
    rows: dict[int, dict] = {}
    for event in store.events(job_id, "metrics"):
        data = event.get("data") or {}
        if "step" in data:
            rows.setdefault(data["step"], {}).update(data)
    out = io.StringIO()
    writer = csv.writer(out)
    if any("train_reward_mean" in r for r in rows.values()):  # reinforcement: rewards, not token accuracy
        columns = ["train_loss", "train_reward_mean", "train_reward_std", "valid_reward_mean", "train_kl",
                   "train_sample_length"]
        writer.writerow(["step", *columns])
    else:
        columns = ["train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy"]
        writer.writerow(["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"])
    for step in sorted(rows):
        writer.writerow([step, *(rows[step].get(c, "") for c in columns)])
    return out.getvalue().encode()


class JobReport:
    def __init__(self, store: JobStore, files: FileService, evals: EvalService):
        self.store, self.files, self.evals = store, files, evals

    def before_after_eval(self, job: FineTuningJob, model_name: str) -> None:
        """The trainer's before/after answers as an eval with two runs (Evals API), for people to open."""
        measured = [e["data"] for e in self.store.events(job.id) if "answers" in (e.get("data") or {})]
        if not job.validation_file or len(measured) < 2:
            return
        if "valid_reward_mean" in measured[0]:  # reinforcement: the grader's mean reward, before and after
            before, after = measured[0]["valid_reward_mean"], measured[-1]["valid_reward_mean"]
            self.store.add_event(job.id, f"Before/after: validation reward {before:.3f} before training, "
                                 f"{after:.3f} after (the job's grader, {len(measured[-1]['answers'])} answers)",
                                 data={"valid_reward_before": before, "valid_reward_after": after})
            return
        items = []
        for conversation in load_dataset(self.files.path(job.validation_file, None)).examples[:MAX_PROBES]:
            messages = conversation.messages
            last = max(i for i, m in enumerate(messages) if m.role == "assistant")
            items.append({"input": [{"role": m.role, "content": m.content} for m in messages[:last]],
                          "reference": messages[last].content})
        before, after = measured[0], measured[-1]
        if not len(items) == len(before["answers"]) == len(after["answers"]):
            return  # a validation row without an answer to ask for: no item to pair with
        project = self.store.row(job.id).project_id
        ev = self.evals.create(CreateEvalRequest.model_validate({
            "name": f"{model_name}: before and after", "metadata": {"fine_tuning_job": job.id},
            "data_source_config": {"type": "custom", "include_sample_schema": True, "item_schema": {
                "type": "object", "properties": {"input": {"type": "array"}, "reference": {"type": "string"}},
                "required": ["input", "reference"]}},
            "testing_criteria": [
                {"type": "string_check", "name": "exact match", "input": "{{sample.output_text}}",
                 "reference": "{{item.reference}}", "operation": "eq"},
                {"type": "text_similarity", "name": "fuzzy match", "input": "{{sample.output_text}}",
                 "reference": "{{item.reference}}", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.9}]}),
            project)
        for label, model, data in (("before", job.model, before), ("after", model_name, after)):
            rows = [{"item": item, "sample": {"output_text": answer, "model": model}}
                    for item, answer in zip(items, data["answers"])]
            self.evals.create_run(ev.id, CreateEvalRunRequest.model_validate({
                "name": f"{label}: {model}", "metadata": {"step": str(data["step"])},
                "data_source": {"type": "jsonl", "source": {"type": "file_content", "content": rows}}}), "",
                project)
        exact = [round(d["valid_exact_match"] * len(items)) for d in (before, after)]
        self.store.add_event(job.id, f"Before/after evaluation {ev.id}: {exact[0]}/{len(items)} validation "
                             f"answers exact before training, {exact[1]}/{len(items)} after",
                             data={"eval_id": ev.id})
