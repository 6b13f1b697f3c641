"""`ftserve` and `python -m trainer` as a user runs them: real subprocesses."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import FACTS, REPO, write_jsonl

pytestmark = pytest.mark.slow
FTSERVE = [sys.executable, "-m", "service.cli"]


def _run(args, **kw):
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, **kw)


def test_tiny_model_command(tmp_path):
    proc = _run(FTSERVE + ["tiny-model", str(tmp_path / "m"), "--pretrain-steps", "3"])  # the full build is cached
    assert proc.returncode == 0, proc.stderr
    assert "pretraining the tiny model" in proc.stderr and "3/3" in proc.stderr and "loss=" in proc.stderr
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()


def test_eval_command_offline_side_by_side_and_consistency(tiny_model, tmp_path):
    questions = write_jsonl(tmp_path / "q.jsonl", [
        {"messages": [{"role": "user", "content": "Hello!"},
                      {"role": "assistant", "content": "Hello! How can I help you today?"}]},
        {"question": "你好！", "answer": "你好！有什么可以帮你的吗？"},
        {"question": "What is the secret code of Alpha?", "answer": "The secret code of Alpha is BLUE-51."},
    ])
    proc = _run(FTSERVE + ["eval", str(questions), "--offline", "--base-model", str(tiny_model), "--model", "base"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["question", "reference", "base"] and "answer/s" in proc.stderr  # a progress bar
    assert lines[2].startswith("Hello!") and "= Hello! How can I help you today?" in lines[2]
    assert "x The secret code of" in lines[4]  # the pretrained base model does not know the fact
    assert lines[-2].split()[-1] == "66.7%" and lines[-2].startswith("exact match")
    # ask three times at temperature 0.7: how often the answers agree
    proc = _run(FTSERVE + ["eval", str(questions), "--offline", "--base-model", str(tiny_model), "--model", "base",
                           "--repeat", "3", "--json", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["models"]["base"]
    assert [len(a) for a in result["answers"]] == [3, 3, 3]
    agree = sum(len(set(a)) == 1 for a in result["answers"]) / 3
    assert result["agreement"] == agree and 1 / 3 <= result["majority_share"] <= 1


def test_eval_command_refuses_bad_input(tiny_model, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "ok"}, {"prompt": "no"}])
    proc = _run(FTSERVE + ["eval", str(bad), "--offline", "--base-model", str(tiny_model), "--model", "base"])
    assert proc.returncode == 2 and f"{bad}:2: not a question row" in proc.stderr
    proc = _run(FTSERVE + ["eval", str(bad), "--offline", "--model", "base"])
    assert proc.returncode == 2 and "--offline needs --base-model" in proc.stderr
    good = write_jsonl(tmp_path / "good.jsonl", [{"question": "hi"}])
    proc = _run(FTSERVE + ["eval", str(good), "--base-url", "http://127.0.0.1:9/v1", "--model", "x"])
    assert proc.returncode == 1 and "cannot reach" in proc.stderr


def test_train_command_shows_progress_and_writes_the_adapter(tiny_model, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        f"model_name_or_path: {tiny_model}\ndataset: {FACTS}\noutput_dir: out\nmax_steps: 4\n"
        "save_steps: 2\nlora_target: all\nnum_threads: 2\n"
    )
    proc = _run(FTSERVE + ["train", str(config)])
    assert proc.returncode == 0, proc.stderr
    assert "4/4" in proc.stderr and "loss=" in proc.stderr and "tok_s=" in proc.stderr
    assert "step 2: checkpoint" in proc.stdout and "adapter written to" in proc.stdout
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()


def test_train_command_runs_sft_then_dpo_from_the_examples(tiny_model, tmp_path):
    """examples/tiny-sft.yaml, then examples/tiny-dpo.yaml (LLaMA-Factory's DPO keys, pairwise rows) on
    from its adapter; shortened, with this test's model and output folders."""
    import yaml

    def config(name: str, **changes) -> Path:
        values = yaml.safe_load((REPO / "examples" / name).read_text())
        values.update(model_name_or_path=str(tiny_model), output_dir=str(tmp_path / name), **changes)
        values["dataset"] = str(REPO / "examples" / values["dataset"])
        path = tmp_path / name
        path.with_suffix(".cfg.yaml").write_text(yaml.safe_dump(values))
        return path.with_suffix(".cfg.yaml")

    assert _run(FTSERVE + ["train", str(config("tiny-sft.yaml", max_steps=4, save_steps=0))]).returncode == 0
    adapter = tmp_path / "tiny-sft.yaml" / "adapter"
    proc = _run(FTSERVE + ["train", str(config("tiny-dpo.yaml", max_steps=3, adapter_name_or_path=str(adapter)))])
    assert proc.returncode == 0, proc.stderr
    assert "3/3" in proc.stderr and "training on from the adapter" in proc.stdout
    events = [json.loads(line) for line in (tmp_path / "tiny-dpo.yaml" / "events.jsonl").read_text().splitlines()]
    assert all("train_reward_accuracy" in e for e in events if e["type"] == "metrics")
    proc = _run(FTSERVE + ["train", str(config("tiny-dpo.yaml", pref_loss="hinge"))])
    assert proc.returncode != 0 and "pref_loss: 'hinge' is not supported yet" in proc.stderr


def test_train_command_rejects_a_typo_with_the_nearest_key(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model_name_or_path: m\ndataset: d\noutput_dir: o\nper_device_train_batchsize: 2\n")
    proc = _run(FTSERVE + ["train", str(config)])
    assert proc.returncode == 2
    assert "per_device_train_batchsize: unknown key (did you mean 'per_device_train_batch_size'?)" in proc.stderr


def test_train_command_lists_bad_rows(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "q"}]}])
    config = tmp_path / "c.yaml"
    config.write_text(f"model_name_or_path: {tiny_model}\ndataset: {data}\noutput_dir: o\n")
    proc = _run(FTSERVE + ["train", str(config)])
    assert proc.returncode == 1
    assert "line 1: messages: no assistant message" in proc.stderr


def test_trainer_module_streams_json_events(tiny_model, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model_name_or_path": str(tiny_model), "dataset": str(FACTS),
                                "output_dir": str(tmp_path / "o"), "max_steps": 3, "num_threads": 2}))
    proc = _run([sys.executable, "-m", "trainer", str(spec)])
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["step"] for e in events if e["type"] == "metrics"] == [1, 2, 3]
    assert events[-1]["type"] == "done"

    spec.write_text(json.dumps({"model_name_or_path": str(tiny_model), "dataset": str(tmp_path / "missing.jsonl"),
                                "output_dir": str(tmp_path / "o2")}))
    proc = _run([sys.executable, "-m", "trainer", str(spec)])
    last = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 1 and last["type"] == "error" and "cannot read file" in last["message"]


def test_train_command_on_a_llamafactory_config_and_json_array(tiny_model, tmp_path):
    """LLaMA-Factory's keys (template, max_samples, overwrite_output_dir, plot_loss, do_train, ...) and a
    dataset named in dataset_info.json (a ShareGPT JSON array with its default tags): trained, twice into
    the same output_dir."""
    rows = [json.loads(line)["messages"] for line in FACTS.read_text().splitlines()]
    sharegpt = [{"conversations": [{"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]}
                                   for m in messages]} for messages in rows]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "identity.json").write_text(json.dumps(sharegpt, indent=2))
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps(
        {"identity": {"file_name": "identity.json", "formatting": "sharegpt", "columns": {"messages": "conversations"}}}))
    config = tmp_path / "qwen3_lora_sft.yaml"
    config.write_text(
        f"model_name_or_path: {tiny_model}\ntrust_remote_code: true\nstage: sft\ndo_train: true\n"
        "finetuning_type: lora\nlora_rank: 8\nlora_target: all\ndataset: identity\ndataset_dir: data\ntemplate: llama3\n"
        "cutoff_len: 2048\nmax_samples: 5\npreprocessing_num_workers: 16\ndataloader_num_workers: 4\n"
        "output_dir: saves/sft\nlogging_steps: 1\nsave_steps: 2\nplot_loss: true\noverwrite_output_dir: true\n"
        "save_only_model: false\nreport_to: none\nper_device_train_batch_size: 1\ngradient_accumulation_steps: 1\n"
        "learning_rate: 1.0e-4\nmax_steps: 3\nlr_scheduler_type: cosine\nwarmup_ratio: 0.1\nddp_timeout: 180000000\n"
        "resume_from_checkpoint: null\nnum_threads: 2\n")
    for _ in range(2):  # the second run starts afresh where the first left checkpoints (overwrite_output_dir)
        proc = _run(FTSERVE + ["train", str(config)])
        assert proc.returncode == 0, proc.stderr
        assert "sharegpt data: 5 rows" in proc.stdout
        assert "warning: template 'llama3' is for another model family than the base model (qwen2)" in proc.stdout
    assert (tmp_path / "saves" / "sft" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "saves" / "sft" / "training_loss.png").read_bytes()[:4] == b"\x89PNG"  # plot_loss
