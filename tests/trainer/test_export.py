"""`ftserve export` (as `llamafactory-cli export`): the trained adapter merged into its base model; plain
transformers loads the folder and answers every prompt exactly as base + adapter did."""

import subprocess
import sys

import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.support.paths import REPO

pytestmark = pytest.mark.slow


def _greedy(model, tokenizer, question: str) -> str:
    enc = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=24, do_sample=False)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def test_the_merged_model_answers_as_the_adapter_did(trained, tiny_model, facts, tmp_path):
    result, _, _ = trained
    config = tmp_path / "merge.yaml"
    config.write_text(f"model_name_or_path: {tiny_model}\nadapter_name_or_path: {result.adapter_path}\n"
                      "template: qwen\nfinetuning_type: lora\nexport_dir: merged\nexport_size: 1\n"
                      "export_device: cpu\nexport_legacy_format: false\n".replace("export_dir: merged",
                                                                                  f"export_dir: {tmp_path / 'merged'}"))
    proc = subprocess.run([sys.executable, "-m", "service.cli", "export", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    merged_dir = tmp_path / "merged"
    assert list(merged_dir.glob("*.safetensors")) and (merged_dir / "tokenizer_config.json").is_file()
    assert not (merged_dir / "adapter_config.json").exists()

    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.adapter_path)
    prompts = [q for q, _ in facts][:12]
    assert len(prompts) == 12
    pairs = [(_greedy(adapted, tokenizer, q), _greedy(merged, tokenizer, q)) for q in prompts]
    assert all(a == m for a, m in pairs), [p for p in pairs if p[0] != p[1]]
    assert sum(a.strip() == answer for (a, _), (_, answer) in zip(pairs, facts)) >= 10  # it learnt the facts


def test_a_legacy_format_or_a_missing_adapter_is_refused(tmp_path):
    config = tmp_path / "merge.yaml"
    config.write_text("model_name_or_path: m\nadapter_name_or_path: ft:nobody\nexport_dir: out\n")
    proc = subprocess.run([sys.executable, "-m", "service.cli", "export", str(config), "--data-dir",
                           str(tmp_path / "data")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "adapter_name_or_path:" in proc.stderr
    config.write_text("model_name_or_path: m\nadapter_name_or_path: a\nexport_dir: out\nexport_legacy_format: true\n")
    proc = subprocess.run([sys.executable, "-m", "service.cli", "export", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "export_legacy_format" in proc.stderr
