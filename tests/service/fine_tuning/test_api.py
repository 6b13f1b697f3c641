"""The Files and Fine-tuning Jobs APIs through the official openai client against a real server."""

import csv
import io
import json
import os
import re
import signal
import time

import httpx
import pytest
from openai import OpenAI

from tests.support.paths import FACTS, write_jsonl
from tests.support.jobs import wait_for, wait_for_status
from tests.support.server import Server, trainer_pids

pytestmark = pytest.mark.slow
FAST = {"n_epochs": 4, "batch_size": 4, "learning_rate": 3e-3, "n_checkpoints": 2}


def _upload(client: OpenAI, path=FACTS):
    with open(path, "rb") as f:
        return client.files.create(file=f, purpose="fine-tune")


def _create(client: OpenAI, file_id: str, hp=FAST, **kw):
    return client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=file_id,
        method={"type": "supervised", "supervised": {"hyperparameters": hp}}, **kw,
    )


def test_full_lifecycle(client, tmp_path):
    train = _upload(client)
    assert train.status == "processed" and train.purpose == "fine-tune" and train.bytes == FACTS.stat().st_size
    valid = _upload(client, write_jsonl(tmp_path / "valid.jsonl", [
        {"messages": [{"role": "user", "content": "What is the secret code of Hotel?"},
                      {"role": "assistant", "content": "The secret code of Hotel is MINT-33."}]}]))
    job = _create(client, train.id, validation_file=valid.id, suffix="facts", seed=7, metadata={"team": "a"})
    assert job.status == "validating_files" and job.fine_tuned_model is None and job.seed == 7
    assert job.metadata == {"team": "a"} and job.user_provided_suffix == "facts"

    done = wait_for_status(client, job.id, ("succeeded", "failed", "cancelled"))
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:ftserve-tiny:ftserve:facts:{job.id[6:14]}"
    assert done.trained_tokens > 0 and done.finished_at >= done.created_at
    assert done.hyperparameters.n_epochs == 4 and done.hyperparameters.batch_size == 4

    # events: newest first, metrics carry losses, pages chain through `after`
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert events[0].message == "The job has successfully completed"
    assert events[-1].message.startswith("Validating training file")
    metrics = [e for e in events if e.type == "metrics" and "train_loss" in (e.data or {})]
    assert metrics and all(e.data["tokens_per_s"] > 0 for e in metrics)
    assert any("valid_loss" in (e.data or {}) for e in events)
    first = client.fine_tuning.jobs.list_events(job.id, limit=3)
    second = client.fine_tuning.jobs.list_events(job.id, limit=3, after=first.data[-1].id)
    assert first.has_more and [e.id for e in first.data + second.data] == [e.id for e in events[:6]]

    # checkpoints: n_checkpoints=2 plus the final step, each published as a model
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    steps = [c.step_number for c in checkpoints]
    assert steps == sorted(steps, reverse=True) and len(steps) == 3 and steps[0] == 12
    for c in checkpoints:
        assert c.fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-{c.step_number}"
        assert c.metrics.train_loss > 0 and c.metrics.valid_loss > 0

    # the result file: step metrics as CSV
    (result_id,) = done.result_files
    assert client.files.retrieve(result_id).purpose == "fine-tune-results"
    rows = list(csv.DictReader(io.StringIO(client.files.content(result_id).text)))
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    assert all(float(r["train_loss"]) > 0 for r in rows) and rows[-1]["valid_loss"]

    # models: the fine-tuned model and every checkpoint are listed, retrievable and deletable
    ids = [m.id for m in client.models.list().data]
    assert "ftserve-tiny" in ids and done.fine_tuned_model in ids
    assert all(c.fine_tuned_model_checkpoint in ids for c in checkpoints)
    model = client.models.retrieve(done.fine_tuned_model)
    assert model.owned_by == "ftserve" and model.parent == "ftserve-tiny"
    assert client.models.delete(checkpoints[-1].fine_tuned_model_checkpoint).deleted
    with pytest.raises(Exception) as e:
        client.models.retrieve(checkpoints[-1].fine_tuned_model_checkpoint)
    assert e.value.status_code == 404
    assert done.fine_tuned_model in [m.id for m in client.models.list().data]

    # the uploaded file comes back byte for byte
    assert client.files.content(train.id).content == FACTS.read_bytes()


def test_pagination_of_files_and_jobs(client, tmp_path):
    ids = [_upload(client).id for _ in range(5)]
    page = client.files.list(limit=2, order="asc", purpose="fine-tune")
    assert len(page.data) == 2 and page.has_more
    newest = client.files.list(limit=5, order="desc", purpose="fine-tune").data
    assert [f.id for f in newest] == ids[::-1]
    after = client.files.list(limit=2, order="desc", after=ids[3], purpose="fine-tune").data
    assert [f.id for f in after] == [ids[2], ids[1]]

    jobs = [_create(client, ids[0], hp={"n_epochs": 1, "batch_size": 12}, metadata={"batch": f"b{i % 2}"})
            for i in range(3)]
    listed = client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in listed.data] == [jobs[2].id, jobs[1].id] and listed.has_more
    rest = client.fine_tuning.jobs.list(limit=2, after=jobs[1].id)
    assert rest.data[0].id == jobs[0].id
    tagged = client.fine_tuning.jobs.list(metadata={"batch": "b0"}).data
    assert {j.id for j in tagged} == {jobs[0].id, jobs[2].id}
    for j in jobs:
        wait_for_status(client, j.id, ("succeeded",))
    # files used by finished jobs can be deleted; then they are gone
    assert client.files.delete(ids[4]).deleted
    assert ids[4] not in [f.id for f in client.files.list().data]


def test_cancel_a_running_job_ends_its_process_group(client, server):
    job = _create(client, _upload(client).id, hp={"n_epochs": 50, "batch_size": 1, "learning_rate": 1e-3})
    wait_for(lambda: any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id).data),
             what="the first training step")
    assert trainer_pids(job.id)
    started = time.monotonic()
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    # killed, not left to finish its 50 epochs (minutes): gone within seconds even on a busy machine
    wait_for(lambda: not trainer_pids(job.id), timeout=10, interval=0.05, what="the trainer to exit")
    assert time.monotonic() - started < 10
    time.sleep(0.5)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.list_events(job.id).data[0].message == "Fine-tuning job cancelled"
    with pytest.raises(Exception) as e:
        client.fine_tuning.jobs.cancel(job.id)
    assert e.value.status_code == 400 and e.value.body["code"] == "job_not_cancellable"


def test_trainer_error_fails_the_job_with_its_message(client):
    job = _create(client, _upload(client).id, hp={"n_epochs": 1, "lora_target_modules": ["no_such_proj"]})
    failed = wait_for_status(client, job.id, ("failed", "succeeded"))
    assert failed.status == "failed" and failed.error.code == "training_failed"
    assert "no_such_proj" in failed.error.message


def test_trainer_killed_by_the_os_fails_the_job(client, server):
    job = _create(client, _upload(client).id, hp={"n_epochs": 50, "batch_size": 1})
    wait_for(lambda: trainer_pids(job.id), what="the trainer to start")
    for pid in trainer_pids(job.id):
        os.kill(pid, signal.SIGKILL)  # what the OOM killer does
    failed = wait_for_status(client, job.id, ("failed",))
    assert "killed by signal SIGKILL" in failed.error.message
    assert httpx.get(server.url + "/health").status_code == 200


def test_kill_9_of_the_server_mid_job_then_restart_resumes(tiny_model, tmp_path):
    server = Server(tmp_path / "data", model=tiny_model, engine="none").start()
    client = server.client()
    try:
        train = _upload(client)
        job = _create(client, train.id, hp={"n_epochs": 40, "batch_size": 2, "learning_rate": 3e-3,
                                            "n_checkpoints": 4})
        wait_for(lambda: client.fine_tuning.jobs.checkpoints.list(job.id).data, what="a first checkpoint")
        events_before = [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
        server.kill()
        wait_for(lambda: not trainer_pids(job.id), timeout=5, what="the trainer to die with the server")

        server.start()
        assert client.files.retrieve(train.id).status == "processed"
        done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=300)
        assert done.status == "succeeded", done.error
        events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))  # auto-paginates with `after`
        messages = [e.message for e in events]
        assert any(m.startswith("Server restarted") for m in messages)
        resumed = [m for m in messages if m.startswith("resumed from step-")]
        assert resumed and int(resumed[0].split("step-")[1].split()[0]) > 0
        assert set(events_before) <= {e.id for e in events}
        assert done.fine_tuned_model in [m.id for m in client.models.list().data]
    finally:
        server.stop()
    assert not trainer_pids(str(tmp_path))


def test_spec_written_for_the_trainer_is_a_valid_config(client, server):
    job = _create(client, _upload(client).id, hp={"n_epochs": 1, "batch_size": 12, "lora_r": 4,
                                                  "lora_alpha": 8, "max_seq_len": 256, "warmup_ratio": 0.1})
    wait_for_status(client, job.id, ("succeeded",))
    spec = json.loads((server.data_dir / "jobs" / job.id / "spec.json").read_text())
    assert (spec["lora_rank"], spec["lora_alpha"], spec["cutoff_len"], spec["warmup_ratio"]) == (4, 8, 256, 0.1)
    assert spec["resume_from_checkpoint"] == "latest"


def test_data_parallel_workers_need_the_ray_backend(client):
    """n_workers > 1 is for the Ray backend; this server trains locally and says so, storing nothing."""
    before = client.fine_tuning.jobs.list().data
    with pytest.raises(Exception) as e:
        _create(client, _upload(client).id, hp={"n_epochs": 1, "n_workers": 2})
    assert e.value.status_code == 400 and e.value.body["code"] == "n_workers_unsupported"
    assert e.value.body["param"] == "method.supervised.hyperparameters.n_workers"
    assert "--training-backend ray" in e.value.body["message"]
    with pytest.raises(Exception) as e:
        client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=_upload(client).id,
                                       extra_body={"resources": {"num_gpus": 1}})
    assert e.value.status_code == 400 and e.value.body["code"] == "resources_unsupported"
    assert [j.id for j in client.fine_tuning.jobs.list().data] == [j.id for j in before]


def _domain_text(seed: int, n: int) -> list[str]:
    """Sentences of one small made-up domain (river gauges), different for each seed."""
    import random

    rnd = random.Random(seed)
    rivers, places = ["Alder", "Brill", "Corran", "Dunmoor"], ["the weir", "the mill", "the ford", "the bridge"]
    return [f"The {rnd.choice(rivers)} gauge at {rnd.choice(places)} read {rnd.randint(10, 99)} centimetres "
            f"on day {rnd.randint(1, 28)}, and the flow was {rnd.choice(['rising', 'falling', 'steady'])}."
            for _ in range(n)]


def _perplexity(model, tokenizer, texts: list[str]) -> float:
    import math

    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text + tokenizer.eos_token, return_tensors="pt").input_ids
            loss = model(input_ids=ids, labels=ids).loss
            total, count = total + loss.item() * (ids.shape[1] - 1), count + ids.shape[1] - 1
    return math.exp(total / count)


def test_continued_pretraining_lowers_held_out_perplexity(client, server, tiny_model, tokenizer, tmp_path):
    """An extension method: raw text rows, loss on every token; the adapter knows the domain's text better
    than the base on sentences it never saw (measured offline with transformers + peft)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from adapters import AdapterStore

    # a plain .txt upload: one document per paragraph
    (tmp_path / "gauges.txt").write_text("\n\n".join(_domain_text(0, 64)) + "\n")
    text = _upload(client, tmp_path / "gauges.txt")
    assert text.status == "processed"
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=text.id, seed=7, method={
        "type": "continued_pretraining", "continued_pretraining": {"hyperparameters": {
            "n_epochs": 6, "batch_size": 8, "learning_rate": 3e-3, "n_checkpoints": 1, "max_seq_len": 64}}})
    assert job.method.type == "continued_pretraining"
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=300)
    assert done.status == "succeeded", done.error
    held_out = _domain_text(1, 16)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    base_ppl = _perplexity(base, tokenizer, held_out)
    tuned = PeftModel.from_pretrained(base, AdapterStore(server.data_dir / "adapters").resolve(done.fine_tuned_model))
    tuned_ppl = _perplexity(tuned, tokenizer, held_out)
    print(f"held-out perplexity: base {base_ppl:.1f}, after continued pre-training {tuned_ppl:.1f}")
    assert tuned_ppl < 0.5 * base_ppl, (base_ppl, tuned_ppl)
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    (planned,) = [int(re.search(r"(\d+) steps planned", e.message)[1]) for e in events if "steps planned" in e.message]
    assert planned == max(e.data["total_steps"] for e in events if e.type == "metrics")  # from the packed blocks

    # each method takes only its own rows, and says which it needs
    wrong = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=_upload(client).id, method={
        "type": "continued_pretraining", "continued_pretraining": {"hyperparameters": {"n_epochs": 1}}})
    failed = wait_for_status(client, wrong.id, ("failed", "succeeded"))
    assert failed.status == "failed" and failed.error.code == "invalid_training_file"
    assert "method continued_pretraining trains on text data" in failed.error.message
    failed = wait_for_status(client, _create(client, text.id).id, ("failed", "succeeded"))
    assert failed.status == "failed" and "method continued_pretraining" in failed.error.message


def _preference_rows(facts, wrong="I do not know."):
    return [{"input": {"messages": [{"role": "user", "content": q}]},
             "preferred_output": [{"role": "assistant", "content": a}],
             "non_preferred_output": [{"role": "assistant", "content": wrong}]} for q, a in facts]


def test_sft_then_dpo_on_the_fine_tuned_model(client, server, tiny_model, tokenizer, facts, tmp_path):
    """Two jobs: SFT on the facts, then DPO (OpenAI's method API) on from the SFT model; the DPO model
    keeps what SFT taught, reports preference metrics and names its parent."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from adapters import AdapterStore
    from tests.support.training import recall

    learn = {"n_epochs": 50, "batch_size": 4, "learning_rate": 5e-3, "lora_r": 16, "n_checkpoints": 1}
    sft = wait_for_status(client, _create(client, _upload(client).id, hp=learn, suffix="sft", seed=0).id,
                          ("succeeded", "failed"), timeout=300)
    assert sft.status == "succeeded", sft.error
    store = AdapterStore(server.data_dir / "adapters")
    sft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model),
                                          store.resolve(sft.fine_tuned_model))
    assert recall(sft_model, tokenizer, facts) >= 0.9 * len(facts)
    pairs = _upload(client, write_jsonl(tmp_path / "pairs.jsonl", _preference_rows(facts)))
    valid = _upload(client, write_jsonl(tmp_path / "valid.jsonl", _preference_rows(facts[:3], "No idea.")))
    assert pairs.status == valid.status == "processed"
    job = client.fine_tuning.jobs.create(model=sft.fine_tuned_model, training_file=pairs.id, validation_file=valid.id,
                                         suffix="dpo", method={"type": "dpo", "dpo": {"hyperparameters": {
                                             "beta": 0.2, "n_epochs": 2, "batch_size": 4, "learning_rate": 5e-4,
                                             "n_checkpoints": 1}}})
    assert job.model == sft.fine_tuned_model and job.method.type == "dpo"
    assert job.method.dpo.hyperparameters.beta == 0.2
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=300)
    assert done.status == "succeeded", done.error
    spec = json.loads((server.data_dir / "jobs" / job.id / "spec.json").read_text())
    assert spec["stage"] == "dpo" and spec["pref_beta"] == 0.2
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    metrics = [e.data for e in events if e.type == "metrics"]
    assert metrics and all("train_reward_accuracy" in m and "train_rewards_chosen" in m for m in metrics)
    assert any("reward accuracy=" in e.message for e in events)
    (last, *_) = client.fine_tuning.jobs.checkpoints.list(job.id).data  # newest first
    extra = last.metrics.model_extra
    assert extra["full_valid_reward_accuracy"] == 1.0 and extra["full_valid_reward_margin"] > 0
    model = client.models.retrieve(done.fine_tuned_model)
    assert model.parent == sft.fine_tuned_model
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model),
                                      store.resolve(done.fine_tuned_model))
    assert recall(tuned, tokenizer, facts) >= 0.9 * len(facts)  # a fresh adapter would recall none

    # a checkpoint is a model to train on from, too; its LoRA shape is kept, and conflicts are refused
    with pytest.raises(Exception) as e:
        client.fine_tuning.jobs.create(model=sft.fine_tuned_model, training_file=pairs.id, method={
            "type": "dpo", "dpo": {"hyperparameters": {"lora_r": 8}}})
    assert e.value.status_code == 400 and e.value.body["param"] == "method.dpo.hyperparameters.lora_r"
    assert "conflicts with" in e.value.body["message"]
    with pytest.raises(Exception) as e:
        client.fine_tuning.jobs.create(model="ft:ftserve-tiny:nobody:x:123", training_file=pairs.id)
    assert e.value.status_code == 400 and e.value.body["code"] == "model_not_available"
    sft_checkpoint = client.fine_tuning.jobs.checkpoints.list(sft.id).data[-1].fine_tuned_model_checkpoint
    chained = client.fine_tuning.jobs.create(model=sft_checkpoint, training_file=_upload(client).id,
                                             method={"type": "supervised", "supervised": {"hyperparameters": {
                                                 "n_epochs": 1, "batch_size": 12, "lora_r": 16}}})
    chained = wait_for_status(client, chained.id, ("succeeded", "failed"))
    assert chained.status == "succeeded", chained.error
    assert client.models.retrieve(chained.fine_tuned_model).parent == sft_checkpoint

    # DPO takes only preference pairs, and says so
    wrong = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=_upload(client).id,
                                           method={"type": "dpo"})
    failed = wait_for_status(client, wrong.id, ("failed", "succeeded"))
    assert failed.status == "failed" and failed.error.code == "invalid_training_file"
    assert "method dpo trains on preference data" in failed.error.message


def test_before_and_after_on_a_job_with_a_validation_file(client):
    """The quick start's job, its facts as the validation set: the base model before training and the
    model after it, asked the same questions with the same greedy settings."""
    train, valid = _upload(client), _upload(client)
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=train.id, validation_file=valid.id,
                                         seed=0, method={"type": "supervised", "supervised": {"hyperparameters": {
                                             "n_epochs": 50, "batch_size": 4, "learning_rate": 5e-3, "lora_r": 16,
                                             "n_checkpoints": 1}}})
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=600)
    assert done.status == "succeeded", done.error
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))[::-1]  # every page, oldest first
    measured = [e for e in events if "answers" in (e.data or {})]
    before, after = measured[0].data, measured[-1].data
    assert (before["step"], after["step"]) == (0, 150) and len(before["answers"]) == 12
    assert measured[0].message.startswith("Before training: 0/12 validation answers exact")
    assert before["valid_exact_match"] == 0 and after["valid_exact_match"] >= 11 / 12
    assert after["valid_fuzzy_match"] > before["valid_fuzzy_match"]
    assert before["general_agreement"] == 1 and 0 <= after["general_agreement"] <= 1
    assert before["general_perplexity"] > 1 and after["general_perplexity"] > 1
    # in checkpoint metrics: the intermediate checkpoint, and the last one with OpenAI's full_valid_* names
    checkpoints = {c.step_number: c.metrics.model_dump() for c in client.fine_tuning.jobs.checkpoints.list(job.id)}
    assert set(checkpoints) == {75, 150}
    assert {"valid_exact_match", "valid_fuzzy_match", "general_perplexity", "general_agreement"} <= set(
        checkpoints[75])
    assert checkpoints[150]["full_valid_exact_match"] == after["valid_exact_match"]
    assert checkpoints[150]["full_valid_fuzzy_match"] == after["valid_fuzzy_match"]
    # and as an eval with a run per side, for anyone to open through the Evals API
    note = next(e for e in events if e.message.startswith("Before/after evaluation"))
    ev = client.evals.retrieve(note.data["eval_id"])
    assert ev.metadata == {"fine_tuning_job": job.id}
    runs = {r.name: r for r in client.evals.runs.list(ev.id, order="asc")}
    assert set(runs) == {"before: ftserve-tiny", f"after: {done.fine_tuned_model}"}
    for name, run in runs.items():
        run = wait_for(lambda: (r := client.evals.runs.retrieve(run.id, eval_id=ev.id)).status == "completed" and r,
                       what=f"run {name}")
        exact = next(c for c in run.per_testing_criteria_results if c.testing_criteria == "exact match")
        expected = (before if name.startswith("before") else after)["valid_exact_match"]
        assert exact.passed == round(expected * 12) and run.result_counts.total == 12
    items = list(client.evals.runs.output_items.list(runs[f"after: {done.fine_tuned_model}"].id, eval_id=ev.id))
    assert items[0].datasource_item["input"] == [{"role": "user", "content": "What is the secret code of Alpha?"}]
    assert items[0].sample.output[0].content == after["answers"][0]
