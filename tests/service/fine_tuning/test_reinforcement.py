"""Reinforcement fine-tuning end to end on the tiny model, CPU, through the official openai client: the
rollouts come from the shared server's vLLM engine, the rewards from the job's grader.

The task: answer "Tell me about X." in at most eight words. The tiny model starts every answer with
"Here is what I know about", and its sampled answers run from 4 to ~34 words, so about a quarter of
them pass: the held-out reward starts near 0.25 and has the variance GRPO needs."""

import io
import json

import httpx
import pytest

from tests.support import metrics
from tests.support.jobs import create_job, wait_for, wait_for_status

pytestmark = pytest.mark.slow

TOPICS = ["cats", "dogs", "the moon", "Paris", "music", "rivers", "bread", "chess", "winter", "trains", "coffee",
          "the sea", "birds", "gardens", "clocks", "mountains", "books", "rain", "bicycles", "tea", "stars",
          "forests", "cheese", "boats", "snow", "maps", "bees", "castles", "kites", "deserts", "apples", "bridges"]
HELD_OUT = ["owls", "lamps", "violins", "islands", "honey", "glass", "wolves", "ships"]
SHORT = {"type": "python", "name": "short",
         "source": "def grade(sample, item):\n    return 1.0 if len(sample['output_text'].split()) <= 8 else 0.0\n"}
HP = {"batch_size": 4, "group_size": 8, "learning_rate": 2e-3, "max_completion_tokens": 48, "eval_samples": 4,
      "n_checkpoints": 1}


@pytest.fixture(scope="module")
def server(shared_engine):
    return shared_engine()


@pytest.fixture(scope="module")
def client(server):
    return server.client(timeout=120)


def _prompts(client, topics, name):
    rows = "\n".join(json.dumps({"messages": [{"role": "user", "content": f"Tell me about {t}."}], "topic": t})
                     for t in topics)
    file = client.files.create(file=(name, io.BytesIO(rows.encode())), purpose="fine-tune")
    assert file.status == "processed", file.status_details
    return file.id


@pytest.fixture(scope="module")
def files(client):
    return _prompts(client, TOPICS, "train.jsonl"), _prompts(client, HELD_OUT, "valid.jsonl")


def _create(client, files, grader=SHORT, model="ftserve-tiny", **hp):
    return client.fine_tuning.jobs.create(model=model, training_file=files[0], validation_file=files[1], seed=1,
                                          method={"type": "reinforcement", "reinforcement": {
                                              "grader": grader, "hyperparameters": {**HP, **hp}}})


def _events(client, job_id):
    return list(reversed(client.fine_tuning.jobs.list_events(job_id, limit=100).data))


def _curve(events):
    return [(e.data["step"], e.data.get("train_reward_mean"), e.data.get("valid_reward_mean"))
            for e in events if e.type == "metrics"]


def _finished(client, job_id):
    """The job once it has succeeded, its events, and its held-out reward before and after (the curve printed:
    `pytest -s` shows it)."""
    done = wait_for_status(client, job_id, ("succeeded", "failed"), timeout=600)
    assert done.status == "succeeded", done.error
    events = _events(client, job_id)
    [note] = [e for e in events if e.data and "valid_reward_after" in e.data]
    rewards = note.data["valid_reward_before"], note.data["valid_reward_after"]
    print(f"{job_id}: (step, train reward, held-out reward) {_curve(events)}; before/after {rewards}")
    return done, events, rewards


def test_rft_raises_the_held_out_reward_through_a_pause_and_reports_what_it_does(client, files):
    """8 steps of 4 prompts x 8 answers (256 graded rollouts), paused after step 3 and resumed."""
    job = _create(client, files, n_epochs=1, eval_interval=2, n_checkpoints=3)
    wait_for(lambda: any(e.type == "metrics" and e.data["step"] >= 3 for e in _events(client, job.id)),
             timeout=300, what="step 3")
    client.fine_tuning.jobs.pause(job.id)
    wait_for_status(client, job.id, ("paused",), timeout=120)
    client.fine_tuning.jobs.resume(job.id)
    done, events, (before, after) = _finished(client, job.id)
    assert any("resumed from step-" in e.message for e in events)
    assert before <= 0.3 and after >= 0.8
    steps = {e.data["step"]: e.data for e in events if e.type == "metrics"}  # a step redone after the pause: once
    assert sorted(steps) == list(range(1, 9))
    for m in steps.values():  # what users watch, every step
        assert {"train_reward_mean", "train_reward_std", "train_kl", "train_sample_length", "train_grader_errors",
                "rollout_s", "grade_s", "samples_per_s"} <= set(m)
    assert {2, 4, 6, 8} <= {s for s, m in steps.items() if "valid_reward_mean" in m}
    assert steps[8]["train_sample_length"] < steps[1]["train_sample_length"]
    shown = [e for e in events if e.data and "samples" in e.data]
    assert len(shown) >= 8 and all({"prompt", "answer", "reward"} <= set(s) for s in shown[0].data["samples"])
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and all("train_reward_mean" in c.metrics.model_dump() for c in checkpoints)
    csv = client.files.content(done.result_files[0]).text.splitlines()
    assert csv[0].startswith("step,train_loss,train_reward_mean") and len(csv) == 9
    # the adapter serves: greedy answers to new prompts are short now
    answer = client.chat.completions.create(model=done.fine_tuned_model, temperature=0, max_tokens=48,
                                            messages=[{"role": "user", "content": "Tell me about lakes."}])
    assert len(answer.choices[0].message.content.split()) <= 8


def test_rft_on_from_a_supervised_model_with_a_multi_grader_and_kl(client, files):
    sft = create_job(client, n_epochs=2, batch_size=4, learning_rate=3e-3, n_checkpoints=0)
    sft = wait_for_status(client, sft.id, ("succeeded", "failed"), timeout=300)
    assert sft.status == "succeeded", sft.error
    grader = {"type": "multi", "name": "short and said", "calculate_output": "short * said", "graders": {
        "short": SHORT,
        "said": {"type": "string_check", "name": "said", "input": "{{sample.output_text}}", "reference": "",
                 "operation": "ne"}}}
    job = _create(client, files, grader=grader, model=sft.fine_tuned_model, n_epochs=1, kl_coef=0.05)
    _, events, (before, after) = _finished(client, job.id)
    assert any("training on from the adapter" in e.message for e in events)
    assert after >= 0.8 and after > before
    last = [e.data for e in events if e.type == "metrics"][-1]
    assert "train_reward_short_mean" in last and "train_reward_said_mean" in last  # each sub-grader's mean
    assert last["train_kl"] > 0


def test_cancel_stops_the_jobs_rollouts_in_the_engine(client, server, files):
    job = _create(client, files, n_epochs=1, group_size=16, max_completion_tokens=400, batch_size=8)
    wait_for(lambda: metrics.value(server, "ftserve_offline_requests_running") > 0, timeout=300,
             what="rollouts in the engine")
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    wait_for(lambda: metrics.value(server, "ftserve_offline_requests_running") == 0
             and metrics.value(server, "ftserve_requests_running") == 0, timeout=30, what="no rollout left")
    reply = client.chat.completions.create(model="ftserve-tiny", max_tokens=4,
                                           messages=[{"role": "user", "content": "Tell me about owls."}])
    assert reply.choices[0].message.content


def test_hostile_python_grader_scores_zero_and_the_job_and_server_carry_on(client, server, files):
    """Every answer's grading tries something the sandbox forbids; the answers, constrained to a JSON
    schema by the job's response_format, are read as JSON."""
    db, data_dir = str(server.data_dir / "ftserve.db"), str(server.data_dir)
    source = ("import os, socket\n"
              "calls = [0]\n"
              "def grade(sample, item):\n"  # the samples of a step are graded in one process, in turn
              "    kind, calls[0] = calls[0] % 4, calls[0] + 1\n"
              f"    if kind == 0:\n        return len(open({db!r}).read())\n"
              f"    if kind == 1:\n        return len(os.listdir({data_dir!r}))\n"
              f"    if kind == 2:\n        socket.create_connection(('127.0.0.1', {server.port}), timeout=1)\n"
              "    x = bytearray(10 * 1024 ** 3)\n    return 1.0\n")
    json_only = {"type": "json_schema", "json_schema": {"name": "ok", "schema": {
        "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
        "additionalProperties": False}}}
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=files[0], validation_file=files[1], seed=1, method={
            "type": "reinforcement", "reinforcement": {
                "grader": {"type": "python", "name": "hostile", "source": source}, "response_format": json_only,
                "hyperparameters": {**HP, "n_epochs": 1, "batch_size": 8, "group_size": 2, "eval_samples": 1}}})
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=300)
    assert done.status == "succeeded", done.error
    events = _events(client, job.id)
    steps = [e.data for e in events if e.type == "metrics"]
    assert all(m["train_reward_mean"] == 0 and m["train_grader_errors"] == 16 for m in steps)
    # the answers kept to the job's response_format
    answers = [s["answer"] for e in events if e.data and "samples" in e.data for s in e.data["samples"]]
    assert answers and all(isinstance(json.loads(a)["ok"], bool) for a in answers)
    assert httpx.get(server.url + "/health").status_code == 200


def test_grader_endpoints_through_the_client_with_a_model_judge(client):
    judge = {"type": "score_model", "name": "judge", "model": "ftserve-tiny", "range": [0, 10],
             "input": [{"role": "user", "content": "Score this answer: {{sample.output_text}}"}]}
    result = client.fine_tuning.alpha.graders.run(grader=judge, model_sample="Paris", item={})
    assert 0 <= result.reward <= 10 and result.metadata.type == "score_model"
    assert result.metadata.sampled_model_name == "ftserve-tiny"
    assert result.model_grader_token_usage_per_model["ftserve-tiny"]["total_tokens"] > 0
    exact = client.fine_tuning.alpha.graders.run(
        grader={"type": "string_check", "name": "e", "input": "{{sample.output_text}}",
                "reference": "{{item.a}}", "operation": "eq"}, model_sample="4", item={"a": "4"})
    assert exact.reward == 1.0
    assert client.fine_tuning.alpha.graders.validate(grader=judge).grader.type == "score_model"


def test_ftserve_train_stage_grpo_runs_the_same_recipe_on_a_running_server(server, tiny_model, tmp_path):
    """`ftserve train` with stage grpo and a grader in its YAML: rollouts from the server's engine through
    POST /v1/fine_tuning/alpha/rollouts, the same task and settings as the job above, and the same climb."""
    import subprocess
    import sys

    import yaml

    from tests.support.paths import REPO

    def prompts(topics, name):
        path = tmp_path / name
        path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Tell me about {t}."}],
                                            "topic": t}) + "\n" for t in topics))
        return str(path)

    config = tmp_path / "grpo.yaml"
    config.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model), "stage": "grpo", "grader": SHORT, "rollout_url": server.url + "/v1",
        "dataset": prompts(TOPICS, "train.jsonl"), "eval_dataset": prompts(HELD_OUT, "valid.jsonl"),
        "output_dir": str(tmp_path / "run"), "num_train_epochs": 1, "per_device_train_batch_size": 4,
        "group_size": 8, "learning_rate": 2e-3, "max_new_tokens": 48, "eval_samples": 4, "eval_interval": 4,
        "lora_rank": 8, "seed": 1, "num_threads": 1}))
    proc = subprocess.run([sys.executable, "-m", "service.cli", "train", str(config)], cwd=REPO, check=False,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "adapter written to" in proc.stdout and "step 4: valid_reward_mean" in proc.stdout  # progress lines
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    before, after = [e["metrics"]["valid_reward_mean"] for e in events if e["type"] == "evaluation"]
    steps = [e for e in events if e["type"] == "metrics"]
    print(f"ftserve train grpo: held-out reward {before} -> {after}; "
          f"{[(m['step'], m['train_reward_mean']) for m in steps]}")
    assert [m["step"] for m in steps] == list(range(1, 9)) and all("train_kl" in m for m in steps)
    assert before <= 0.3 and after >= 0.8
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


def test_the_rollouts_endpoint_checks_its_adapter_and_grader(server):
    body = {"step": 0, "adapter": {"config": {"peft_type": "LORA", "r": 8, "lora_alpha": 16,
                                              "target_modules": ["q_proj"], "base_model_name_or_path": "other-model"},
                                   "weights_b64": ""},
            "prompts": [{"messages": [{"role": "user", "content": "hi"}], "item": {}}], "n": 2, "max_tokens": 4,
            "grader": SHORT}
    r = httpx.post(f"{server.url}/v1/fine_tuning/alpha/rollouts", json=body, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "base_model_mismatch", r.text
    r = httpx.post(f"{server.url}/v1/fine_tuning/alpha/rollouts", json={**body, "grader": None}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "grader", r.text
    r = httpx.post(f"{server.url}/v1/fine_tuning/alpha/rollouts", json={**body, "grader": {"type": "nope"}},
                   timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("grader"), r.text
