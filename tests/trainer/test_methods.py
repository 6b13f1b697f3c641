"""Training methods beyond SFT, end to end on CPU with the tiny model: DPO, SFT -> DPO, continued pre-training."""

import json
import math
import shutil

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tests.support.paths import write_jsonl
from tests.support.training import recall, train_config
from trainer.recipe import train

pytestmark = pytest.mark.slow

COLORS = "red blue green yellow black white purple orange".split()
PLACES = "river mountain ocean forest desert island city valley".split()
PROMPTS = [f"Tell me about the {c} {p}." for c in COLORS for p in PLACES]
HELD_OUT = PROMPTS[::8]  # one place per colour, never trained on


def preference_row(prompt: str) -> dict:
    """The preferred answer is a friendly sentence; the other a curt 'No.' (which the base model, whose
    log-probability falls with every token, prefers)."""
    subject = prompt.removeprefix("Tell me about the ").rstrip(".")
    return {"input": {"messages": [{"role": "user", "content": prompt}]},
            "preferred_output": [{"role": "assistant", "content": f"Yes, the {subject} is lovely."}],
            "non_preferred_output": [{"role": "assistant", "content": "No."}]}


def greedy(model, tokenizer, prompt: str, max_new_tokens: int = 12) -> str:
    enc = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


@pytest.fixture(scope="module")
def dpo_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo")
    data = write_jsonl(out / "pairs.jsonl", [preference_row(p) for p in PROMPTS if p not in HELD_OUT])
    valid = write_jsonl(out / "valid.jsonl", [preference_row(p) for p in HELD_OUT])
    events = []
    cfg = train_config(tiny_model, out / "run", dataset=str(data), eval_dataset=str(valid), stage="dpo",
                       per_device_train_batch_size=8, max_steps=80, save_steps=40, logging_steps=10, seed=0)
    return train(cfg, events.append), events


def test_dpo_flips_the_greedy_answer_on_held_out_prompts(dpo_run, tiny_model, tokenizer):
    result, _ = dpo_run
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.adapter_path)
    before = [greedy(base, tokenizer, p) for p in HELD_OUT]
    after = [greedy(tuned, tokenizer, p) for p in HELD_OUT]
    candidates = [i for i, answer in enumerate(before) if not answer.startswith("Yes,")]
    flipped = [i for i in candidates if after[i].startswith("Yes,")]
    print(f"DPO flip rate on held-out prompts: {len(flipped)}/{len(candidates)}", after[:2])
    assert len(candidates) == len(HELD_OUT)  # the base model never gives the preferred answer
    assert len(flipped) >= 0.9 * len(candidates)


def test_dpo_reports_preference_metrics_on_train_and_validation(dpo_run):
    result, events = dpo_run
    metrics = [e for e in events if e["type"] == "metrics"]
    first, last = metrics[0], metrics[-1]
    for split in ("train", "valid", "full_valid"):
        for key in ("loss", "rewards_chosen", "rewards_rejected", "reward_accuracy", "reward_margin"):
            assert f"{split}_{key}" in last, f"{split}_{key}"
    assert last["train_loss"] < first["train_loss"] < math.log(2) + 0.05  # starts at log 2: policy == reference
    assert last["valid_reward_accuracy"] == 1.0
    assert last["valid_rewards_chosen"] > 0 > last["valid_rewards_rejected"]
    assert last["valid_reward_margin"] == pytest.approx(
        last["valid_rewards_chosen"] - last["valid_rewards_rejected"], abs=1e-5)
    (ckpt,) = [e for e in events if e["type"] == "checkpoint"]
    assert "valid_reward_accuracy" in ckpt["metrics"]
    assert result.trained_tokens == last["tokens"] > 0


def test_dpo_resume_is_byte_identical(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", [preference_row(p) for p in PROMPTS[:16]])
    overrides = dict(dataset=str(data), stage="dpo", max_steps=6, save_steps=3, per_device_train_batch_size=4,
                     lora_dropout=0.1)
    full = train(train_config(tiny_model, tmp_path / "full", **overrides))
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-3", resumed_dir / "checkpoints" / "step-3")
    events = []
    resumed = train(train_config(tiny_model, resumed_dir, resume_from_checkpoint="latest", **overrides), events.append)
    assert [e["step"] for e in events if e["type"] == "metrics"] == [4, 5, 6]
    a = (full.adapter_path / "adapter_model.safetensors").read_bytes()
    b = (resumed.adapter_path / "adapter_model.safetensors").read_bytes()
    assert a == b


def test_sft_then_dpo_trains_on_from_the_sft_adapter(trained, tiny_model, tokenizer, facts, tmp_path):
    sft, _, _ = trained
    # Preferences over the facts: the learnt answer over a wrong one. Starting from the SFT adapter, DPO
    # keeps what SFT taught; a fresh adapter would recall nothing (the base model recalls no fact).
    rows = [{"input": {"messages": [{"role": "user", "content": q}]},
             "preferred_output": [{"role": "assistant", "content": a}],
             "non_preferred_output": [{"role": "assistant", "content": "I do not know."}]} for q, a in facts]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    events = []
    cfg = train_config(tiny_model, tmp_path / "run", dataset=str(data), stage="dpo", max_steps=5,
                       learning_rate=1e-4, adapter_name_or_path=str(sft.adapter_path), lora_rank=4)
    result = train(cfg, events.append)
    assert any("training on from the adapter" in e.get("message", "") for e in events)
    config = json.loads((result.adapter_path / "adapter_config.json").read_text())
    assert config["r"] == 8  # the parent's rank, not the config's
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.adapter_path)
    assert recall(tuned, tokenizer, facts) >= 0.9 * len(facts)


DOMAIN = ["The zorblat valve opens when the quib pressure rises above nine.",
          "A quib gauge reads high after the zorblat pump is primed.",
          "Engineers close the zorblat valve before the quib line is drained.",
          "The quib line hums softly while the zorblat pump runs."]


def _perplexity(model, tokenizer, texts: list[str]) -> float:
    nll, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            out = model(input_ids=ids, labels=ids)
            nll += out.loss.item() * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    return math.exp(nll / count)


def test_continued_pretraining_lowers_held_out_perplexity_on_the_domain(tiny_model, tokenizer, tmp_path):
    # Training documents: the domain's sentences in varied orders; held out: one sentence never seen
    # in that exact company, and a reworded one.
    import random

    rnd = random.Random(0)
    docs = []
    for _ in range(24):
        sentences = DOMAIN[:]
        rnd.shuffle(sentences)
        docs.append(" ".join(sentences))
    (tmp_path / "domain.txt").write_text("\n\n".join(docs) + "\n")
    held_out = ["The zorblat pump runs while the quib gauge reads high.",
                "Engineers open the zorblat valve when the quib line hums."]
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    before = _perplexity(base, tokenizer, held_out)
    events = []
    result = train(train_config(tiny_model, tmp_path / "run", dataset=str(tmp_path / "domain.txt"), stage="pt",
                                max_steps=30, per_device_train_batch_size=4, cutoff_len=64), events.append)
    assert any("24 documents packed into" in e.get("message", "") for e in events)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.adapter_path)
    after = _perplexity(tuned, tokenizer, held_out)
    print(f"held-out perplexity: base {before:.1f}, after continued pre-training {after:.1f}")
    assert after < 0.5 * before


@pytest.mark.parametrize("loss", ["ipo", "orpo", "simpo"])
def test_each_preference_loss_moves_its_metrics_the_right_way(loss, tiny_model, tmp_path):
    """LLaMA-Factory's other preference losses on the same pairs: the held-out loss falls and every held-out
    pair is ranked right; orpo's and simpo's reward margins (no reference model) rise."""
    data = write_jsonl(tmp_path / "pairs.jsonl", [preference_row(p) for p in PROMPTS if p not in HELD_OUT])
    valid = write_jsonl(tmp_path / "valid.jsonl", [preference_row(p) for p in HELD_OUT])
    events = []
    cfg = train_config(tiny_model, tmp_path / "run", dataset=str(data), eval_dataset=str(valid), stage="dpo",
                       pref_loss=loss, per_device_train_batch_size=8, max_steps=12, eval_steps=4, logging_steps=4,
                       seed=0)
    train(cfg, events.append)
    evaluated = [e for e in events if e["type"] == "metrics" and "valid_reward_margin" in e]
    first, last = evaluated[0], evaluated[-1]
    print(f"{loss}: valid reward margin {first['valid_reward_margin']:.3f} -> {last['valid_reward_margin']:.3f}, "
          f"accuracy {first['valid_reward_accuracy']:.2f} -> {last['valid_reward_accuracy']:.2f}, "
          f"loss {first['valid_loss']:.3f} -> {last['valid_loss']:.3f}")
    if loss != "ipo":  # IPO regresses the per-token margin towards 1/(2 beta), from above as well as below
        assert last["valid_reward_margin"] > first["valid_reward_margin"]
    assert last["valid_loss"] < first["valid_loss"]
    assert last["valid_reward_accuracy"] == 1.0
    assert ("valid_chosen_logp_change" in last) is (loss == "ipo")


def labelled_rows(prompt: str) -> list[dict]:
    """KTO's rows from a preference row: the friendly answer desirable, the curt one not."""
    row = preference_row(prompt)
    messages = row["input"]["messages"]
    return [{"messages": messages + row["preferred_output"], "label": True},
            {"messages": messages + row["non_preferred_output"], "label": False}]


def test_kto_moves_desirable_rewards_up_and_undesirable_down(tiny_model, tokenizer, tmp_path):
    data = write_jsonl(tmp_path / "kto.jsonl", [r for p in PROMPTS if p not in HELD_OUT for r in labelled_rows(p)])
    valid = write_jsonl(tmp_path / "valid.jsonl", [r for p in HELD_OUT for r in labelled_rows(p)])
    events = []
    cfg = train_config(tiny_model, tmp_path / "run", dataset=str(data), eval_dataset=str(valid), stage="kto",
                       per_device_train_batch_size=8, max_steps=40, eval_steps=8, logging_steps=8, seed=0)
    result = train(cfg, events.append)
    evaluated = [e for e in events if e["type"] == "metrics" and "valid_reward_margin" in e]
    first, last = evaluated[0], evaluated[-1]
    print(f"kto: valid rewards chosen {first['valid_rewards_chosen']:.3f} -> {last['valid_rewards_chosen']:.3f}, "
          f"rejected {first['valid_rewards_rejected']:.3f} -> {last['valid_rewards_rejected']:.3f}, "
          f"accuracy {first['valid_reward_accuracy']:.2f} -> {last['valid_reward_accuracy']:.2f}, "
          f"loss {first['valid_loss']:.3f} -> {last['valid_loss']:.3f}, kl {last['valid_kl']:.3f}")
    assert last["valid_rewards_chosen"] > first["valid_rewards_chosen"] and last["valid_rewards_chosen"] > 0
    assert last["valid_rewards_rejected"] < first["valid_rewards_rejected"] and last["valid_rewards_rejected"] < 0
    assert last["valid_loss"] < first["valid_loss"] and last["valid_reward_accuracy"] == 1.0
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.adapter_path)
    flipped = sum(greedy(tuned, tokenizer, p).startswith("Yes,") for p in HELD_OUT)
    print(f"kto: {flipped}/{len(HELD_OUT)} held-out prompts answered the desirable way")
    assert flipped >= 0.75 * len(HELD_OUT)


def test_rslora_and_loraplus_train_a_servable_plain_lora(tiny_model, tokenizer, facts, tmp_path):
    """LLaMA-Factory's use_rslora and loraplus_lr_ratio: the facts are learnt, and the adapter is a plain
    LoRA whose config tells vLLM to scale it as rsLoRA."""
    cfg = train_config(tiny_model, tmp_path / "run", use_rslora=True, loraplus_lr_ratio=4.0, lora_alpha=8,
                       learning_rate=1e-3)
    result = train(cfg)
    config = json.loads((result.adapter_path / "adapter_config.json").read_text())
    assert config["use_rslora"] is True and config["use_dora"] is False and config["init_lora_weights"] is True
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.adapter_path)
    learnt = recall(tuned, tokenizer, facts)
    print(f"rslora + loraplus: {learnt}/{len(facts)} facts recalled")
    assert learnt >= 10


def _sft_adapter(tiny_model, tmp_path, answer) -> str:
    rows = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": answer(p)}]}
            for p in PROMPTS]
    return str(train(train_config(tiny_model, tmp_path / "sft", dataset=str(write_jsonl(tmp_path / "sft.jsonl", rows)),
                                  max_steps=60)).adapter_path)


def _friendly(prompt: str) -> str:
    return preference_row(prompt)["preferred_output"][0]["content"]


def test_pref_ftx_flips_a_supervised_model_where_plain_dpo_collapses(tiny_model, tokenizer, tmp_path):
    """SFT teaches the curt answer, then DPO prefers the friendly one at a high learning rate: plain sigmoid
    DPO degenerates; with pref_ftx (the SFT term on the chosen answers) the held-out answers flip, whole."""
    sft = _sft_adapter(tiny_model, tmp_path, lambda p: "No.")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [preference_row(p) for p in PROMPTS if p not in HELD_OUT])
    answers = {}
    for ftx in (0.0, 1.0):
        result = train(train_config(tiny_model, tmp_path / f"dpo-{ftx}", dataset=str(pairs), stage="dpo",
                                    adapter_name_or_path=sft, learning_rate=3e-3, pref_ftx=ftx, max_steps=60))
        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.adapter_path)
        answers[ftx] = [greedy(tuned, tokenizer, p, 16) for p in HELD_OUT[:4]]
    print("plain DPO:", answers[0.0], "with pref_ftx 1.0:", answers[1.0])

    def whole(answer: str) -> bool:
        return answer.startswith("Yes, the ") and answer.endswith(" is lovely.")

    assert sum(whole(a) for a in answers[1.0]) >= 3
    assert sum(whole(a) for a in answers[0.0]) < 3


def test_falling_chosen_likelihood_is_warned_about_once(tiny_model, tmp_path):
    """Pairs whose answers differ by one character, after SFT on the chosen ones: DPO pushes both down, and the
    run says so in one warning event."""
    sft = _sft_adapter(tiny_model, tmp_path, _friendly)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{
        "input": {"messages": [{"role": "user", "content": p}]},
        "preferred_output": [{"role": "assistant", "content": _friendly(p)}],
        "non_preferred_output": [{"role": "assistant", "content": _friendly(p)[:-1] + "!"}]} for p in PROMPTS])
    events = []
    train(train_config(tiny_model, tmp_path / "dpo", dataset=str(pairs), stage="dpo", adapter_name_or_path=sft,
                       learning_rate=3e-3, max_steps=20, logging_steps=5), events.append)
    warnings = [e for e in events if e["type"] == "info" and e["message"].startswith("warning")]
    assert len(warnings) == 1 and warnings[0]["chosen_logp_change"] < -1.0
    assert "pref_ftx" in warnings[0]["message"]
    assert [e for e in events if e["type"] == "metrics"][-1]["train_chosen_logp_change"] < -1.0
