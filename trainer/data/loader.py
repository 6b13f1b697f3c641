"""The loader: a file's format detected from its first row (or given), every row validated by its
format's schema, the errors collected with their lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from trainer.data.alpaca import AlpacaRow
from trainer.data.errors import MAX_ERRORS, DataError, FieldError, RowError, RowFailure, pydantic_error
from trainer.data.openai import ChatRow, PreferenceRow
from trainer.data.reading import read_records
from trainer.data.sharegpt import sharegpt_example
from trainer.data.shapes import KINDS, Dataset, Example, ShareGPTTags
from trainer.data.text import TextRow, load_plain_text

FORMATS = ("chat", "alpaca", "sharegpt", "preference", "text", "plaintext")


ROW_SCHEMAS: dict[str, type[BaseModel]] = {
    "chat": ChatRow,
    "alpaca": AlpacaRow,
    "text": TextRow,
    "preference": PreferenceRow,
}
_DETECT_KEYS = [
    ("messages", "chat"),
    ("conversations", "sharegpt"),
    ("instruction", "alpaca"),
    ("preferred_output", "preference"),
    ("text", "text"),
]


FORMAT_KEYS = ("`messages` (OpenAI chat), `conversations` (ShareGPT), `instruction` (Alpaca), "
               "`preferred_output` (OpenAI preference) or `text` (pre-training text)")


def detect_format(row: dict) -> str | None:
    for key, fmt in _DETECT_KEYS:
        if key in row:
            return fmt
    return None


def parse_row(obj: Any, fmt: str, line: int, tags: ShareGPTTags = ShareGPTTags()) -> Example:
    """Validate one decoded row of format `fmt`; raises `RowFailure`."""
    if not isinstance(obj, dict):
        raise RowFailure(RowError(line, "", f"expected a JSON object, got {type(obj).__name__}"))
    if fmt == "sharegpt":
        try:
            return sharegpt_example(obj, tags)
        except FieldError as e:
            raise RowFailure(RowError(line, e.field, e.message)) from None
    try:
        return ROW_SCHEMAS[fmt].model_validate(obj).to_example()
    except ValidationError as e:
        raise RowFailure(pydantic_error(line, e)) from None
    except FieldError as e:  # checks across fields (tool calls and their results)
        raise RowFailure(RowError(line, e.field, e.message)) from None


def load_dataset(
    path: str | Path,
    data_format: str = "auto",
    tags: ShareGPTTags = ShareGPTTags(),
    max_errors: int = MAX_ERRORS,
    rename: dict[str, str] | None = None,
) -> Dataset:
    """Read and validate a whole JSONL file or JSON array (or a `.txt` file of plain text); raises `DataError`
    listing the bad rows. `rename`: the file's column names -> the format's keys."""
    if data_format != "auto" and data_format not in FORMATS:
        raise ValueError(f"data_format must be 'auto' or one of {FORMATS}, not '{data_format}'")
    path = Path(path)
    if data_format == "plaintext" or (data_format == "auto" and path.suffix.lower() == ".txt"):
        return load_plain_text(path)
    errors: list[RowError] = []
    bad = 0
    examples: list[Example] = []
    fmt = None if data_format == "auto" else data_format
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(path, [RowError(0, "", f"cannot read file: {e.strerror}")]) from None
    for record in read_records(path, raw):
        if record.error is not None:
            err = record.row_error()
        else:
            obj = record.value
            if rename and isinstance(obj, dict):  # a dataset_info.json entry's columns, as the loader's keys
                obj = {rename.get(key, key): value for key, value in obj.items()}
            if fmt is None:
                fmt = detect_format(obj) if isinstance(obj, dict) else None
                if fmt is None:
                    keys = sorted(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
                    raise DataError(path, [record.row_error(message=(
                        f"cannot tell the data format from {'keys ' if isinstance(obj, dict) else 'a '}{keys}; "
                        f"a row holds one of: {FORMAT_KEYS}"))])
            try:
                example = parse_row(obj, fmt, record.line, tags)
                if examples and type(example) is not type(examples[0]):
                    raise RowFailure(RowError(record.line, "", f"a {KINDS[type(example)]} row in a file of "
                                              f"{KINDS[type(examples[0])]} rows: one file holds one kind"))
                examples.append(example)
                continue
            except RowFailure as f:
                err = f.error
                err.element = record.element
        bad += 1
        if len(errors) < max_errors:
            errors.append(err)
    if errors:
        raise DataError(path, errors, bad)
    if not examples:
        raise DataError(path, [RowError(0, "", "the file has no rows")])
    return Dataset(str(path), fmt or data_format, examples)
