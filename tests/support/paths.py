"""The repository, the examples the tests train on, and writing test data."""

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FACTS = REPO / "examples" / "facts.jsonl"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path
