"""Reinforcement jobs' requests, rows and plan (fast: no engine): what is refused at once with the parameter
at fault, what fails validation before any training, and what `auto` resolves to."""

import io
import json

import pytest

from service.fine_tuning.plan import plan
from service.fine_tuning.protocol import ReinforcementHyperparameters
from tests.support.app import app_client
from tests.support.jobs import wait_for
from trainer.data.errors import DataError
from trainer.data.prompts import load_prompts
from trainer.reinforce import _group_advantages, _reward_metrics
from trainer.contract import RolloutSample

BASE = "model-not-loaded"  # app_client's base model: a name only, nothing loads it
EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
         "operation": "eq"}
PROMPTS = [{"messages": [{"role": "user", "content": f"What is {n} + 1?"}], "answer": str(n + 1)} for n in range(6)]


def _jsonl(rows) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with app_client(tmp_path_factory.mktemp("rft")) as client:
        yield client


def _upload(app, rows, name="rft.jsonl") -> dict:
    return app.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": (name, io.BytesIO(_jsonl(rows)))}).json()


def _job(app, file_id, grader=EXACT, **hp):
    return app.post("/v1/fine_tuning/jobs", json={"model": BASE, "training_file": file_id, "method": {
        "type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": hp}}})


def test_prompt_rows_upload_as_fine_tuning_data(app):
    assert _upload(app, PROMPTS)["status"] == "processed"


@pytest.mark.parametrize("method, param, words", [
    ({"type": "reinforcement"}, "method", "needs `method.reinforcement`"),
    ({"type": "reinforcement", "reinforcement": {"grader": {**EXACT, "input": "{{answer}}"}}},
     "method.reinforcement.grader.input", "names nothing"),
    ({"type": "reinforcement", "reinforcement": {"grader": {"type": "multi", "name": "m", "graders": {"a": EXACT},
                                                             "calculate_output": "a + os"}}},
     "method.reinforcement.grader.calculate_output", "'os'"),
    ({"type": "reinforcement", "reinforcement": {"grader": {"type": "python", "name": "p", "source": "grade = 1"}}},
     "method.reinforcement.grader.source", "def grade"),
    ({"type": "reinforcement", "reinforcement": {"grader": EXACT, "hyperparameters": {"compute_multiplier": 11}}},
     "method.reinforcement.hyperparameters.compute_multiplier", "10"),
    ({"type": "reinforcement", "reinforcement": {"grader": EXACT, "hyperparameters": {"reasoning_effort": "max"}}},
     "method.reinforcement.hyperparameters.reasoning_effort", "'high'"),
    ({"type": "reinforcement", "reinforcement": {"grader": EXACT, "hyperparameters": {"group_size": 1}}},
     "method.reinforcement.hyperparameters.group_size", "2"),
    ({"type": "reinforcement", "reinforcement": {"grader": EXACT, "response_format": {"type": "yaml"}}},
     "method.reinforcement.response_format", "json_schema"),
])
def test_bad_reinforcement_requests_are_refused_naming_the_parameter(app, method, param, words):
    file_id = _upload(app, PROMPTS)["id"]
    r = app.post("/v1/fine_tuning/jobs", json={"model": BASE, "training_file": file_id, "method": method})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and words in error["message"], error


SAID = {**EXACT, "reference": "", "operation": "ne"}  # names no item field


@pytest.mark.parametrize("rows, grader, param, words", [
    ([{k: v for k, v in row.items() if k != "answer"} for row in PROMPTS], EXACT,
     "method.reinforcement.grader.reference", "{{item.answer}} names nothing"),
    ([{"messages": row["messages"] + [{"role": "assistant", "content": "7"}]} for row in PROMPTS], SAID,
     "training_file", "ends before the assistant's turn"),
])
def test_rows_that_cannot_train_fail_the_job_before_it_trains(app, rows, grader, param, words):
    job = _job(app, _upload(app, rows)["id"], grader).json()
    failed = wait_for(lambda: (j := app.get(f"/v1/fine_tuning/jobs/{job['id']}").json())["status"] == "failed" and j,
                      timeout=30, what="the job to fail validation")
    assert failed["error"]["param"] == param and words in failed["error"]["message"], failed["error"]
    events = app.get(f"/v1/fine_tuning/jobs/{job['id']}/events").json()["data"]
    assert not any("started" in e["message"] for e in events)


def test_the_job_keeps_its_grader_and_hyperparameters(app):
    r = _job(app, _upload(app, PROMPTS)["id"], n_epochs=1, group_size=6, kl_coef=0.1)
    assert r.status_code == 200, r.text
    method = r.json()["method"]
    assert method["type"] == "reinforcement" and method["reinforcement"]["grader"] == EXACT
    assert method["reinforcement"]["hyperparameters"]["group_size"] == 6
    app.post(f"/v1/fine_tuning/jobs/{r.json()['id']}/cancel")


def test_python_graders_off_refuse_reinforcement_jobs_that_use_them(tmp_path):
    with app_client(tmp_path, python_graders=False) as client:
        file_id = _upload(client, PROMPTS)["id"]
        r = _job(client, file_id, {"type": "python", "name": "p", "source": "def grade(s, i):\n    return 1.0"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "method.reinforcement.grader.source"


def test_auto_resolves_batch_group_and_validation_schedule():
    p = plan(ReinforcementHyperparameters(), 20, {"model_name_or_path": "m", "dataset": "d", "output_dir": "o",
                                                  "stage": "grpo", "grader": EXACT, "rollout_url": "http://x"})
    assert (p.batch_size, p.spec["group_size"], p.spec["eval_interval"], p.spec["eval_samples"]) == (8, 4, 0, 1)
    assert "group_size=4" in p.auto_note
    p = plan(ReinforcementHyperparameters(compute_multiplier=2, batch_size=2, n_epochs=1), 20, {
        "model_name_or_path": "m", "dataset": "d", "output_dir": "o", "stage": "grpo", "grader": EXACT,
        "rollout_url": "http://x"})
    assert (p.spec["group_size"], p.total_steps) == (8, 10)


def test_prompt_rows_are_checked_row_by_row(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join([json.dumps(PROMPTS[0]), json.dumps({"prompt": "x"}),
                               json.dumps({"messages": [{"role": "robot", "content": "x"}]})]))
    with pytest.raises(DataError) as e:
        load_prompts(path)
    assert [(err.line, err.field) for err in e.value.errors] == [(2, "messages"), (3, "messages[0]")]
    rows = load_prompts(tmp_path / "ok.json" if (tmp_path / "ok.json").write_text(json.dumps(PROMPTS)) else None)
    assert len(rows) == 6 and rows[0].item["answer"] == "1" and rows[0].messages[-1]["role"] == "user"


def test_advantages_are_relative_to_each_prompts_group():
    def sample(i, reward):
        return RolloutSample(prompt_index=i, prompt_token_ids=[1], token_ids=[2, 3], text="x", reward=reward,
                             sub_rewards={"a": reward})
    samples = [sample(0, 1.0), sample(0, 0.0), sample(1, 0.5), sample(1, 0.5)]
    adv = _group_advantages(samples)
    assert adv[0] > 0 > adv[1] and adv[0] == pytest.approx(-adv[1]) and adv[2] == adv[3] == 0
    m = _reward_metrics("train", samples)
    assert m["train_reward_mean"] == 0.5 and m["train_reward_a_mean"] == 0.5 and m["train_sample_length"] == 2


@pytest.mark.parametrize("job_id, headers, status", [
    ("ftjob-nothere", {}, 401),
    ("ftjob-nothere", {"Authorization": "Bearer guessed"}, 401),
    ("..%2F..%2Fetc", {"Authorization": "Bearer guessed"}, 404),  # no route: nothing reaches the filesystem
])
def test_the_rollout_endpoint_answers_only_a_running_trainer_with_its_token(app, job_id, headers, status):
    body = {"step": 0, "adapter": {"config": {}, "weights_b64": "AAAA"}, "n": 2, "max_tokens": 4,
            "prompts": [{"messages": [{"role": "user", "content": "hi"}], "item": {}}]}
    r = app.post(f"/internal/rollouts/{job_id}", json=body, headers=headers)
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    if status == 401:
        assert r.json()["error"]["code"] == "invalid_rollout_token"
