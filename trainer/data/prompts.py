"""Reinforcement fine-tuning's rows, in OpenAI's format: a chat prompt (`messages` ending before the
assistant's turn) plus any fields the grader reads (`{{item.answer}}`), kept as they are.

    {"messages": [{"role": "user", "content": "What is 2 + 2?"}], "answer": "4"}

The whole row is the grader's `item`; the model's answer is its `sample`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.data.errors import MAX_ERRORS, DataError, RowError
from trainer.data.reading import read_records

ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class Prompt:
    messages: list[dict]  # {role, content}, as chat templates take them
    item: dict  # the whole row


def load_prompts(path: str | Path, max_errors: int = MAX_ERRORS) -> list[Prompt]:
    """The prompts of a JSONL file or JSON array; DataError listing the rows at fault."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(path, [RowError(0, "", f"cannot read file: {e.strerror}")]) from None
    prompts, errors, bad = [], [], 0
    for record in read_records(path, raw):
        error = record.row_error() if record.error is not None else _check(record.value, record)
        if error is None:
            row = record.value
            prompts.append(Prompt([{"role": "system" if m["role"] == "developer" else m["role"],
                                    "content": m["content"]} for m in row["messages"]], row))
            continue
        bad += 1
        if len(errors) < max_errors:
            errors.append(error)
    if errors:
        raise DataError(path, errors, bad)
    if not prompts:
        raise DataError(path, [RowError(0, "", "the file has no rows")])
    return prompts


def _check(row, record) -> RowError | None:
    if not isinstance(row, dict):
        return record.row_error(message=f"a row is a JSON object, not {type(row).__name__}")
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return record.row_error("messages", "a reinforcement row holds `messages`: the prompt, a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return record.row_error(f"messages[{i}]", f"a message is {{role, content}} with role one of "
                                    f"{', '.join(ROLES)} and text content")
    if messages[-1]["role"] == "assistant":
        return record.row_error(f"messages[{len(messages) - 1}]", "a reinforcement prompt ends before the "
                                "assistant's turn: the model writes the answer, the grader scores it")
    return None
