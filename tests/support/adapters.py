"""PEFT adapters made as users outside ftserve make them, and archives of them to import."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import torch

from tests.support.paths import FACTS


def tar_of(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def folder_files(folder: Path, prefix: str = "my-adapter/") -> dict[str, bytes]:
    return {prefix + p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def peft_script_adapter(tiny_model: Path, out: Path, steps: int = 40, **lora) -> Path:
    """The field notes' plain PEFT script: r=8, lora_alpha=32, q_proj/v_proj, trained a little on the facts."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32), LoraConfig(
        **{"r": 8, "lora_alpha": 32, "lora_dropout": 0.1, "target_modules": ["q_proj", "v_proj"],
           "task_type": "CAUSAL_LM", **lora}))
    rows = [json.loads(line)["messages"] for line in FACTS.read_text().splitlines()]
    texts = [tok.apply_chat_template(m, tokenize=False) for m in rows]
    batch = tok(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    return out
