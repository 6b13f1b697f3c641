"""`ftserve export CONFIG.yaml`, as `llamafactory-cli export` does: a base model and a LoRA adapter merged
into one Hugging Face model folder (safetensors shards of at most `export_size` GB, the tokenizer and
its chat template beside them) that plain transformers, `ftserve serve --model` and other servers load,
and that answers as the adapter did.

    model_name_or_path: data/models/ftserve-tiny
    adapter_name_or_path: saves/sft/adapter      # or a served model's name, ft:..., from --data-dir's store
    export_dir: exported/ftserve-tiny-sft
    export_size: 5
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass

from adapters.atomic import staged


@dataclass(config=ConfigDict(extra="forbid", use_attribute_docstrings=True))
class ExportConfig:
    model_name_or_path: str
    """The base model folder the adapter was trained on."""

    adapter_name_or_path: str
    """The adapter: a folder (a job's or `ftserve train`'s `adapter/`), or a served model's name (`ft:...`)."""

    export_dir: str
    """Where the merged model folder is written (replaced whole if it exists)."""

    export_size: int = Field(default=5, ge=1)
    """Largest shard, in GB."""

    export_device: Literal["cpu", "auto"] = "cpu"
    """Where the merge runs (`auto`: a GPU if there is one)."""

    export_legacy_format: bool = False
    """Accepted as LLaMA-Factory's key; the shards are always safetensors (true is refused)."""

    template: str | None = None
    """Accepted as LLaMA-Factory's key: the merged model keeps the base model's own chat template."""

    trust_remote_code: bool = False
    """Let transformers run the model folder's own code (custom architectures)."""

    finetuning_type: Literal["lora"] = "lora"
    """Only LoRA adapters are merged."""

    @classmethod
    def from_file(cls, path: str | Path) -> ExportConfig:
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"cannot read {path}: {e}") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: the config must be a mapping of keys to values")
        try:
            config = cls(**values)
        except ValidationError as e:
            raise ValueError("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) \
                from None
        if config.export_legacy_format:
            raise ValueError("export_legacy_format: true is not supported: the shards are safetensors")
        return config


def export(cfg: ExportConfig, adapter_dir: Path) -> Path:
    """Merge the adapter at `adapter_dir` into the base model; the merged folder's path."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if cfg.export_device == "auto" and torch.cuda.is_available() else "cpu"
    base = AutoModelForCausalLM.from_pretrained(cfg.model_name_or_path, dtype="auto",
                                                trust_remote_code=cfg.trust_remote_code).to(device)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if adapter_config.get("use_dora"):
        raise ValueError("the adapter is a DoRA adapter; only plain LoRA adapters are merged here")
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    target = Path(cfg.export_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with staged(target) as tmp:
        merged.save_pretrained(tmp, max_shard_size=f"{cfg.export_size}GB", safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target
