"""A job's files checked before it is queued, and its plan stored: the example count (for text, the
packed blocks), the data's kind against the method, the model it trains on from copied under the job,
and the trainer's spec (plan.py) written to the object store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from adapters import AdapterStore, ObjectStore
from adapters.store import AdapterError
from service.files.service import FileService, file_format
from service.fine_tuning.plan import DEFAULT_CUTOFF, Plan, plan
from service.errors import APIError
from service.fine_tuning.protocol import FineTuningJob, Method
from service.settings import Settings
from trainer.contract import JobKeys
from trainer.data import STAGE_KINDS, DataError, load_dataset
from trainer.data.prompts import load_prompts

STAGES = {"supervised": "sft", "continued_pretraining": "pt", "dpo": "dpo", "kto": "kto",
          "reinforcement": "grpo"}  # method -> stage


class InvalidJob(Exception):
    """What fails a job at validation: its error's code, message and param."""

    def __init__(self, code: str, message: str, param: str | None):
        self.code, self.message, self.param = code, message, param


def hyperparameters_of(method: dict | None):
    """The job's hyperparameters, of its method's class (DPO's add `beta`)."""
    return Method.model_validate(method or {"type": "supervised"}).settings.hyperparameters


def stage_of(method: dict | None) -> str:
    """The trainer's stage for a job's method."""
    return STAGES[(method or {}).get("type", "supervised")]


class JobValidator:
    def __init__(self, files: FileService, adapters: AdapterStore, objects: ObjectStore, settings: Settings,
                 base_model_path: Path, local_paths: Callable[[FineTuningJob], dict], graders=None):
        """`local_paths(job)`: the trainer spec's paths on this server (the runner's); `graders`: checks a
        reinforcement job's grader against its rows."""
        self.files, self.adapters, self.objects, self.settings = files, adapters, objects, settings
        self.graders = graders
        self.base_model_path, self.local_paths = base_model_path, local_paths
        self._tokenizer = None  # the base model's, loaded when a text file's blocks are first counted

    def parent(self, job: FineTuningJob) -> str | None:
        """The fine-tuned model (or checkpoint) a job trains on from; None when it starts from the base."""
        return job.model if job.model != self.settings.base_model_name else None

    def validate(self, job: FineTuningJob) -> tuple[int, Plan]:
        """The job's example count and plan, its spec stored; InvalidJob (or the trainer config's ValueError)
        when its files or hyperparameters cannot train."""
        stage, hp = stage_of(job.method), hyperparameters_of(job.method)
        if stage == "grpo":
            return self._validate_reinforcement(job, hp)
        n_examples, data_format = self.count_examples(job.training_file, "training_file", stage, hp.max_seq_len)
        if job.validation_file:
            _, valid_format = self.count_examples(job.validation_file, "validation_file", stage, hp.max_seq_len)
            if (valid_format == "plaintext") != (data_format == "plaintext"):
                raise InvalidJob("invalid_validation_file", "validation_file: a .txt validation file goes with a "
                                 ".txt training file, and JSONL with JSONL", "validation_file")
        if self.parent(job) is not None:  # training on from a fine-tuned model: a copy of it
            self.store_parent(job)
        p = plan(hp, n_examples, {**self.local_paths(job), "served_model_name": self.settings.base_model_name,
                                  "seed": job.seed, "num_threads": self.settings.trainer_threads,
                                  "stage": stage, "data_format": data_format})
        self.objects.put_bytes(JobKeys(job.id).spec, json.dumps(p.spec, indent=1).encode())
        return n_examples, p

    def count_examples(self, file_id: str, param: str, stage: str, max_seq_len: int | None) -> tuple[int, str]:
        """The file's training example count (for text: the blocks its documents are packed into) and its
        data format (`auto`, or `plaintext` for a .txt upload)."""
        code = "invalid_training_file" if param == "training_file" else "invalid_validation_file"
        data_format = file_format(self.files.get(file_id, None).filename)
        try:
            ds = load_dataset(self.files.path(file_id, None), data_format)
        except DataError as e:
            raise InvalidJob(code, str(e), param) from None
        if STAGE_KINDS[stage] != ds.kind:
            method = {s: m for m, s in STAGES.items()}
            fits = {kind: method[s] for s, kind in STAGE_KINDS.items()}[ds.kind]
            raise InvalidJob(code, f"{param}: method {method[stage]} trains on {STAGE_KINDS[stage]} data, and "
                             f"this file holds {ds.kind} data ({ds.format} rows); use method {fits} for it", param)
        if ds.kind == "text":
            from trainer.encoding import pack_text

            return len(pack_text(self.tokenizer(), ds.examples, max_seq_len or DEFAULT_CUTOFF)), data_format
        return len(ds.examples), data_format

    def tokenizer(self):
        """The base model's tokenizer, loaded on first use."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.base_model_path)
        return self._tokenizer

    def store_parent(self, job: FineTuningJob) -> None:
        """The model a job trains on from, copied under the job's prefix: a later change to it does not
        change the job, and a remote trainer finds it in the object store."""
        try:
            source = self.adapters.local_copy(job.model)
        except AdapterError:
            raise InvalidJob("model_not_available", f"model {job.model!r} was deleted before the job started",
                             "model") from None
        self.objects.put_tree(JobKeys(job.id).parent, source)

    def _validate_reinforcement(self, job: FineTuningJob, hp) -> tuple[int, Plan]:
        """Prompt rows (trainer/data/prompts.py), each holding every item field the grader names."""
        method = Method.model_validate(job.method).reinforcement
        counts = {}
        for file_id, param in ((job.training_file, "training_file"), (job.validation_file, "validation_file")):
            if not file_id:
                continue
            code = f"invalid_{param}"
            try:
                rows = load_prompts(self.files.path(file_id, None))
            except DataError as e:
                raise InvalidJob(code, f"{param}: {e.details}", param) from None
            keys = set.intersection(*(set(p.item) for p in rows))
            if self.graders is not None:
                try:
                    self.graders.check(method.grader, "method.reinforcement.grader", keys)
                except APIError as e:
                    raise InvalidJob(code, f"{param}: {e.message}", e.param) from None
            counts[param] = len(rows)
        if self.parent(job) is not None:  # training on from a fine-tuned model: a copy of it
            self.store_parent(job)
        if job.validation_file is None and hp.eval_interval != "auto":
            raise InvalidJob("invalid_hyperparameters", "eval_interval needs a validation_file to evaluate on",
                             "method.reinforcement.hyperparameters.eval_interval")
        p = plan(hp, counts["training_file"], {
            **self.local_paths(job), "served_model_name": self.settings.base_model_name, "seed": job.seed,
            "num_threads": self.settings.trainer_threads, "stage": "grpo",
            "grader": method.grader.model_dump(mode="json", exclude_none=True)})
        self.objects.put_bytes(JobKeys(job.id).spec, json.dumps(p.spec, indent=1).encode())
        return counts["training_file"], p
