"""Shared fixtures: the tiny model is built once per test session."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.support.paths import FACTS


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The pretrained tiny model, built once per machine and code version (~2.5 min) and cached."""
    from trainer.tiny_model import cached_tiny_model

    return cached_tiny_model()


@pytest.fixture(scope="session")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="session")
def facts() -> list[tuple[str, str]]:
    """(question, answer) pairs of examples/facts.jsonl."""
    rows = [json.loads(line) for line in FACTS.read_text().splitlines()]
    return [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows]


def pytest_collection_modifyitems(items):
    """A test that needs the tiny model (built in ~2.5 min on a new machine) is slow, whatever its module says."""
    for item in items:
        if "tiny_model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
