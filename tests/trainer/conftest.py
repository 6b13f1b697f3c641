"""The trainer tests' shared config helper and one SFT run on the facts, shared by every module."""

import pytest

from tests.conftest import FACTS, write_jsonl
from trainer.config import TrainConfig
from trainer.recipe import train


def train_config(tiny_model, out, **overrides) -> TrainConfig:
    values = dict(
        model_name_or_path=str(tiny_model), served_model_name="ftserve-tiny", dataset=str(FACTS),
        output_dir=str(out), per_device_train_batch_size=12, learning_rate=3e-3,
        lr_scheduler_type="constant", max_steps=100, lora_target="all", num_threads=2, seed=1234,
    )
    return TrainConfig.from_mapping({**values, **overrides})


def recall(model, tokenizer, facts) -> int:
    hits = 0
    for question, answer in facts:
        enc = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        out = model.generate(**enc, max_new_tokens=24, do_sample=False)
        hits += tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() == answer
    return hits


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
