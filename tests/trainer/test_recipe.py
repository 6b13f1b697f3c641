"""The recipe end to end on CPU with the tiny model (litgpt-style: real training, small sizes)."""

import json
import shutil

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tests.support.paths import write_jsonl
from tests.support.training import recall, train_config
from trainer.recipe import train

pytestmark = pytest.mark.slow


def test_facts_are_recalled_after_training_and_not_before(trained, tiny_model, tokenizer, facts):
    result, _, _ = trained
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert recall(base, tokenizer, facts) == 0
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.adapter_path)
    assert recall(tuned, tokenizer, facts) >= 0.9 * len(facts)


def test_val_size_holds_rows_out(tiny_model, tmp_path):
    events = []
    train(train_config(tiny_model, tmp_path, val_size=0.25, max_steps=1), events.append)
    assert "9 training and 3 validation examples" in events[0]["message"]
    assert [e for e in events if "valid_loss" in e][0]["valid_loss"] > 0


def test_events_report_loss_eval_checkpoints_and_done(trained):
    result, events, out = trained
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [e["step"] for e in metrics] == list(range(10, 101, 10))
    for key in ("train_loss", "learning_rate", "tokens", "tokens_per_s", "elapsed_s"):
        assert all(key in e for e in metrics), key
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert metrics[-1]["tokens"] == result.trained_tokens > 0
    evals = [e for e in metrics if "valid_loss" in e]  # one event per step, validation metrics in it
    assert [e["step"] for e in evals] == [50, 100]
    assert all(e["valid_loss"] > 0 and 0 <= e["valid_mean_token_accuracy"] <= 1 for e in evals)
    assert "full_valid_loss" not in evals[0] and evals[-1]["full_valid_loss"] == evals[-1]["valid_loss"]
    (ckpt,) = [e for e in events if e["type"] == "checkpoint"]
    assert ckpt["step"] == 50 and ckpt["metrics"]["valid_loss"] == evals[0]["valid_loss"]
    assert events[-1]["type"] == "done" and events[-1]["steps"] == 100
    on_disk = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert on_disk == events


def test_checkpoints_and_final_adapter_are_standard_peft_adapters(trained, tiny_model):
    result, _, out = trained
    for path in (out / "checkpoints" / "step-50", result.adapter_path):
        config = json.loads((path / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == "ftserve-tiny"
        assert config["r"] == 8 and set(config["target_modules"]) >= {"q_proj", "v_proj", "down_proj"}
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), path)
        assert any("lora_A" in n for n, _ in model.named_parameters())
    assert not list(out.glob(".*staging"))


def test_resume_from_checkpoint_is_byte_identical(tiny_model, tmp_path):
    overrides = dict(max_steps=12, save_steps=6, per_device_train_batch_size=5, gradient_accumulation_steps=2,
                     lora_dropout=0.1, lr_scheduler_type="cosine", warmup_ratio=0.2)
    full = train(train_config(tiny_model, tmp_path / "full", **overrides))
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-6", resumed_dir / "checkpoints" / "step-6")
    events = []
    resumed = train(train_config(tiny_model, resumed_dir, resume_from_checkpoint="latest", **overrides), events.append)
    assert any("resumed from step-6" in e.get("message", "") for e in events)
    assert [e["step"] for e in events if e["type"] == "metrics"] == list(range(7, 13))
    a = (full.adapter_path / "adapter_model.safetensors").read_bytes()
    b = (resumed.adapter_path / "adapter_model.safetensors").read_bytes()
    assert a == b
    # and the run really moved past the checkpoint
    c = (tmp_path / "full" / "checkpoints" / "step-6" / "adapter_model.safetensors").read_bytes()
    assert a != c


def test_refuses_to_overwrite_checkpoints_without_resume(tiny_model, tmp_path):
    train(train_config(tiny_model, tmp_path, max_steps=2, save_steps=1))
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(train_config(tiny_model, tmp_path, max_steps=2))


def test_continued_pretraining_on_text_rows(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "text.jsonl", [{"text": "The river flows to the ocean. " * 10}] * 4)
    events = []
    result = train(train_config(tiny_model, tmp_path / "out", dataset=str(data), stage="pt", max_steps=3), events.append)
    assert result.steps == 3 and result.trained_tokens > 0
    with pytest.raises(ValueError, match="stage .sft. does not train on text data"):
        train(train_config(tiny_model, tmp_path / "out2", dataset=str(data), max_steps=1))


def test_gradient_checkpointing_gives_the_same_loss(tiny_model, tmp_path):
    losses = []
    for gc in (False, True):
        events = []
        train(train_config(tiny_model, tmp_path / str(gc), max_steps=2, gradient_checkpointing=gc), events.append)
        losses.append([e["train_loss"] for e in events if e["type"] == "metrics"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert torch.get_num_threads() == 2
