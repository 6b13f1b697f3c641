"""LLaMA-Factory's `dataset_info.json`: datasets named in a config (`dataset: identity,alpaca_en_demo`), each
described by its `file_name`, `formatting` (`alpaca` or `sharegpt`), `ranking`, `columns`, `tags`,
`split` and `num_samples`; each read through the one loader, then concatenated (`mix_strategy: concat`).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trainer.data.loader import load_dataset
from trainer.data.shapes import Dataset, ShareGPTTags

# LLaMA-Factory's column roles -> the keys the loader reads, per formatting
_KEYS = {
    "alpaca": {"prompt": "instruction", "query": "input", "response": "output", "history": "history",
               "system": "system", "chosen": "chosen", "rejected": "rejected", "kto_tag": "label"},
    "sharegpt": {"messages": "conversations", "system": "system", "tools": "tools", "chosen": "chosen",
                 "rejected": "rejected", "kto_tag": "label"},
}
_REMOTE = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")


class DatasetEntry(BaseModel):
    """One dataset of dataset_info.json."""

    model_config = ConfigDict(extra="ignore")
    file_name: str
    formatting: Literal["alpaca", "sharegpt"] = "alpaca"
    ranking: bool = False
    columns: dict[str, str] = {}
    tags: dict[str, str] = {}
    split: Literal["train"] = "train"
    num_samples: int | None = Field(default=None, ge=1)


def is_dataset_names(value: str, dataset_dir: str | Path) -> bool:
    """`dataset` names entries of `dataset_dir/dataset_info.json` (rather than giving a file's path)."""
    return not Path(value).exists() and (Path(dataset_dir) / "dataset_info.json").is_file()


def load_named_datasets(names: str, dataset_dir: str | Path, max_samples: int | None = None) -> Dataset:
    """The named datasets (comma-separated), each read as its entry says, concatenated in order."""
    dataset_dir = Path(dataset_dir)
    info_path = dataset_dir / "dataset_info.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8-sig"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {info_path}: {e}") from None
    parts, kind = [], None
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        entry = _entry(info, name, info_path)
        path = (dataset_dir / entry.file_name).resolve()
        if not path.is_relative_to(dataset_dir.resolve()) or not path.is_file():
            raise ValueError(f"dataset '{name}': file_name {entry.file_name!r} is not a file in {dataset_dir}")
        fmt, rename = _format(entry, name)
        part = load_dataset(path, fmt, ShareGPTTags(**entry.tags), rename=rename)
        part.examples = part.examples[: min(n for n in (entry.num_samples, max_samples, len(part.examples)) if n)]
        if kind is not None and part.kind != kind:
            raise ValueError(f"dataset '{name}' holds {part.kind} data, the datasets before it {kind} data: "
                             "datasets trained together hold one kind")
        kind = part.kind
        parts.append(part)
    if not parts:
        raise ValueError("dataset: no dataset named")
    return Dataset(",".join(p.path for p in parts), parts[0].format, [e for p in parts for e in p.examples])


def _entry(info: dict, name: str, info_path: Path) -> DatasetEntry:
    if name not in info:
        near = difflib.get_close_matches(name, sorted(info), n=1)
        raise ValueError(f"dataset '{name}' is not in {info_path}" + (f"; did you mean '{near[0]}'?" if near else ""))
    raw = info[name]
    if isinstance(raw, dict) and "file_name" not in raw and any(k in raw for k in _REMOTE):
        raise ValueError(f"dataset '{name}' is on a hub ({', '.join(k for k in _REMOTE if k in raw)}): download "
                         "it into the dataset_dir and give its file_name")
    try:
        return DatasetEntry.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"dataset '{name}' in {info_path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def _format(entry: DatasetEntry, name: str) -> tuple[str, dict[str, str]]:
    """The loader's format for an entry, and the renaming of the file's columns to the loader's keys."""
    unknown = set(entry.columns) - set(_KEYS[entry.formatting])
    if entry.formatting == "alpaca" and set(entry.columns) == {"prompt"} and not entry.ranking:
        return "text", {entry.columns["prompt"]: "text"}  # pre-training text: the prompt column alone
    if unknown:
        raise ValueError(f"dataset '{name}': columns {sorted(unknown)} are not supported for {entry.formatting} "
                         f"data (supported: {sorted(_KEYS[entry.formatting])})")
    return entry.formatting, {column: _KEYS[entry.formatting][role] for role, column in entry.columns.items()}
