"""The trainer tests' config helper and the recall measure on the facts."""

from tests.support.paths import FACTS
from trainer.config import TrainConfig


def train_config(tiny_model, out, **overrides) -> TrainConfig:
    values = dict(
        model_name_or_path=str(tiny_model), served_model_name="ftserve-tiny", dataset=str(FACTS),
        output_dir=str(out), per_device_train_batch_size=12, learning_rate=3e-3,
        lr_scheduler_type="constant", max_steps=100, lora_target="all", num_threads=2, seed=1234,
    )
    return TrainConfig.from_mapping({**values, **overrides})


def recall(model, tokenizer, facts) -> int:
    """How many of the (question, answer) facts the model answers exactly, greedily."""
    hits = 0
    for question, answer in facts:
        enc = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        out = model.generate(**enc, max_new_tokens=24, do_sample=False)
        hits += tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() == answer
    return hits
