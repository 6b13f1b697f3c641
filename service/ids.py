"""Object ids, minted one way: a prefix in OpenAI's spelling for the object, then random hex."""

from __future__ import annotations

import uuid


def new_id(prefix: str, length: int = 24) -> str:
    """`prefix` with its separator (`file-`, `eval_`), then `length` random hex digits (at most 32)."""
    return f"{prefix}{uuid.uuid4().hex[:length]}"
