"""One SFT run on the facts, shared by every trainer test module."""

import pytest

from tests.support.paths import write_jsonl
from tests.support.training import train_config
from trainer.recipe import train


@pytest.fixture(scope="session")
def trained(tiny_model, tmp_path_factory):
    events = []
    out = tmp_path_factory.mktemp("run")
    unseen = write_jsonl(out / "unseen.jsonl", [
        {"messages": [{"role": "user", "content": "What is the secret code of Hotel?"},
                      {"role": "assistant", "content": "The secret code of Hotel is MINT-33."}]},
    ])
    config = train_config(tiny_model, out / "run", save_steps=50, eval_dataset=str(unseen), logging_steps=10)
    result = train(config, events.append)
    return result, events, out / "run"
