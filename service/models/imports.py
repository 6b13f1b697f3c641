"""Importing a PEFT LoRA adapter trained elsewhere: what is checked before it is published.

An adapter is servable here when its `adapter_config.json` is a LoRA config peft knows, key by key,
with nothing vLLM cannot serve (DoRA, trained biases, modules_to_save, per-layer patterns), its rank
is within the engine's `max_lora_rank`, and every tensor in `adapter_model.safetensors` is a
`lora_A`/`lora_B` weight of a linear module the served base model has, with that module's shapes.
The base model's module shapes come from its config alone (a skeleton on the meta device: no weights
are read). safetensors headers are read without loading the tensors; nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path

from service.errors import APIError, Kind
from service.models.archive import CONFIG, WEIGHTS

_TENSOR = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>A|B)\.weight$")
_FLOATS = {"F32", "F16", "BF16"}
# LoRA settings vLLM cannot serve: each must be left at its empty default
_UNSERVABLE = {
    "use_dora": "DoRA", "modules_to_save": "modules_to_save (fully trained extra modules)",
    "lora_bias": "lora_bias", "rank_pattern": "rank_pattern (a rank per module)",
    "alpha_pattern": "alpha_pattern (an alpha per module)", "layers_to_transform": "layers_to_transform",
    "layer_replication": "layer_replication", "target_parameters": "target_parameters",
    "trainable_token_indices": "trainable_token_indices",
}


def _bad(message: str, code: str) -> APIError:
    return APIError(Kind.INVALID_REQUEST, message, param="file_id", code=code)


@functools.cache
def _peft_keys() -> frozenset[str]:
    from peft import LoraConfig

    return frozenset(f.name for f in dataclasses.fields(LoraConfig))


@functools.cache
def base_linears(model_path: str) -> dict[str, tuple[int, int]]:
    """Every linear module of the base model: name -> (in_features, out_features), from its config only."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name: (m.in_features, m.out_features) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)}


@dataclasses.dataclass(frozen=True)
class Base:
    """The served base model as an imported adapter must match it."""
    name: str  # the served id
    path: Path  # its directory
    max_lora_rank: int

    def names(self) -> set[str]:
        return {self.name.lower(), self.path.name.lower()}


def check_config(folder: Path, base: Base) -> dict:
    """The parsed adapter_config.json, or a 400 naming what is wrong with it."""
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad(f"{CONFIG} is not valid JSON: {e}.", "invalid_adapter_config") from None
    if not isinstance(config, dict):
        raise _bad(f"{CONFIG} must be a JSON object.", "invalid_adapter_config")
    if config.get("peft_type") != "LORA":
        raise _bad(f"{CONFIG}: peft_type is {config.get('peft_type')!r}; only LoRA adapters (\"LORA\") are "
                   "served.", "invalid_adapter_config")
    unknown = sorted(set(config) - _peft_keys())
    if unknown:
        raise _bad(f"{CONFIG}: unknown keys {', '.join(unknown)} (not fields of peft's LoraConfig).",
                   "invalid_adapter_config")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise _bad(f"{CONFIG}: r must be a positive integer (got {rank!r}).", "invalid_adapter_config")
    if rank > base.max_lora_rank:
        raise _bad(f"{CONFIG}: r={rank} is above this server's max_lora_rank ({base.max_lora_rank}).",
                   "adapter_rank_too_large")
    alpha = config.get("lora_alpha")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise _bad(f"{CONFIG}: lora_alpha must be a positive number (got {alpha!r}).", "invalid_adapter_config")
    targets = config.get("target_modules")
    if not (isinstance(targets, str) or (isinstance(targets, list) and targets
                                          and all(isinstance(t, str) for t in targets))):
        raise _bad(f"{CONFIG}: target_modules must be a list of module names (got {targets!r}).",
                   "invalid_adapter_config")
    for key, what in _UNSERVABLE.items():
        if config.get(key):
            raise _bad(f"{CONFIG}: {what} is set ({key}={config[key]!r}); vLLM cannot serve it.",
                       "unsupported_adapter")
    if config.get("bias", "none") != "none":
        raise _bad(f"{CONFIG}: bias={config['bias']!r}: trained biases cannot be served (use \"none\").",
                   "unsupported_adapter")
    named = config.get("base_model_name_or_path")
    if named and not {named.lower(), Path(named).name.lower()} & base.names():
        raise _bad(f"The adapter was trained on {named!r}; this server serves {base.name!r}. Import it where "
                   "its base model is served (or, if it is the same model under another name, set "
                   f"base_model_name_or_path to {base.name!r} in its {CONFIG}).", "base_model_mismatch")
    return config


def check_weights(folder: Path, base: Base, rank: int) -> int:
    """Checks every tensor's name, dtype and shape against the base model; returns how many modules it adapts."""
    from safetensors import SafetensorError, safe_open

    linears = base_linears(str(base.path))
    seen: dict[str, set[str]] = {}
    try:
        with safe_open(str(folder / WEIGHTS), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - a safe_open handle is not iterable
                match = _TENSOR.match(key)
                if match is None:
                    raise _bad(f"{WEIGHTS}: unexpected tensor {key!r} (only lora_A/lora_B weights of linear "
                               "modules are served).", "unsupported_adapter")
                module, part = match["module"], match["part"]
                if module not in linears:
                    raise _bad(f"{WEIGHTS}: {key!r} adapts {module!r}, which the base model {base.name!r} "
                               "does not have as a linear module.", "unknown_target_module")
                tensor = f.get_slice(key)
                if tensor.get_dtype() not in _FLOATS:
                    raise _bad(f"{WEIGHTS}: {key!r} has dtype {tensor.get_dtype()}; expected F32, F16 or BF16.",
                               "invalid_adapter_weights")
                fan_in, fan_out = linears[module]
                expected = [rank, fan_in] if part == "A" else [fan_out, rank]
                if list(tensor.get_shape()) != expected:
                    raise _bad(f"{WEIGHTS}: {key!r} has shape {list(tensor.get_shape())}; the base model's "
                               f"{module} with r={rank} needs {expected}.", "adapter_shape_mismatch")
                seen.setdefault(module, set()).add(part)
    except SafetensorError as e:
        raise _bad(f"{WEIGHTS} is not a valid safetensors file: {e}.", "invalid_adapter_weights") from None
    half = sorted(m for m, parts in seen.items() if parts != {"A", "B"})
    if half:
        raise _bad(f"{WEIGHTS}: {half[0]} has only one of lora_A and lora_B.", "invalid_adapter_weights")
    if not seen:
        raise _bad(f"{WEIGHTS} holds no LoRA weights.", "invalid_adapter_weights")
    return len(seen)


def check_adapter(folder: Path, base: Base) -> dict:
    """Every check above, in order: the parsed adapter_config.json of an adapter the base model can serve."""
    config = check_config(folder, base)
    check_weights(folder, base, config["r"])
    return config
