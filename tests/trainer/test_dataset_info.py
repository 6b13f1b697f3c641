"""LLaMA-Factory's dataset_info.json (fast: no model): named datasets read as their entries say, mixed by
concatenation, with their columns, tags, ranking and sample counts; what cannot be read is named."""

import json

import pytest

from trainer.config import TrainConfig
from trainer.data import Conversation, PreferencePair, TextDocument
from trainer.data.dataset_info import is_dataset_names, load_named_datasets

INFO = {
    "identity": {"file_name": "identity.json", "formatting": "sharegpt",
                 "columns": {"messages": "conversations"}},
    "alpaca_demo": {"file_name": "alpaca_demo.json"},
    "renamed": {"file_name": "renamed.jsonl", "columns": {"prompt": "question", "response": "answer"},
                "num_samples": 2},
    "openai_style": {"file_name": "openai.json", "formatting": "sharegpt", "columns": {"messages": "messages"},
                     "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                              "assistant_tag": "assistant", "system_tag": "system"}},
    "dpo_demo": {"file_name": "dpo.json", "ranking": True,
                 "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
    "c4_demo": {"file_name": "c4.json", "columns": {"prompt": "text"}},
    "kto_demo": {"file_name": "kto.json", "columns": {"prompt": "question", "response": "answer",
                                                      "kto_tag": "feedback"}},
    "hub": {"hf_hub_url": "someone/dataset"},
    "escape": {"file_name": "../outside.json"},
}


@pytest.fixture()
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "dataset_info.json").write_text(json.dumps(INFO, indent=2))
    (d / "identity.json").write_text(json.dumps([
        {"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]} for i in range(3)],
        indent=2))
    (d / "alpaca_demo.json").write_text(json.dumps([{"instruction": "i", "input": "x", "output": "o"}] * 4))
    (d / "renamed.jsonl").write_text("".join(json.dumps({"question": f"q{i}", "answer": "a"}) + "\n" for i in range(5)))
    (d / "openai.json").write_text(json.dumps([{"messages": [{"role": "user", "content": "q"},
                                                             {"role": "assistant", "content": "a"}]}]))
    (d / "dpo.json").write_text(json.dumps([{"instruction": "q", "input": "", "chosen": "good", "rejected": "bad"}]))
    (d / "c4.json").write_text(json.dumps([{"text": "a document"}, {"text": "another"}]))
    (d / "kto.json").write_text(json.dumps([{"question": "q", "answer": "good", "feedback": True},
                                            {"question": "q", "answer": "bad", "feedback": False}]))
    (tmp_path / "outside.json").write_text("[]")
    return d


def test_named_datasets_are_concatenated_in_order(data):
    ds = load_named_datasets("identity, alpaca_demo,renamed,openai_style", data)
    assert len(ds.examples) == 3 + 4 + 2 + 1 and all(isinstance(e, Conversation) for e in ds.examples)
    assert ds.examples[0].messages[1].content == "a0"
    assert ds.examples[3].messages[0].content == "i\nx"  # alpaca: instruction, then input
    assert ds.examples[7].messages[0].content == "q0"  # renamed columns: question -> prompt


def test_max_samples_applies_to_each_dataset(data):
    assert len(load_named_datasets("identity,alpaca_demo", data, max_samples=2).examples) == 4


def test_a_kto_entry_s_tag_column_labels_the_answers(data):
    ds = load_named_datasets("kto_demo", data)
    assert ds.kind == "labelled" and [(e.completion, e.desirable) for e in ds.examples] == [("good", True),
                                                                                          ("bad", False)]


def test_ranking_and_pretraining_entries(data):
    assert isinstance(load_named_datasets("dpo_demo", data).examples[0], PreferencePair)
    texts = load_named_datasets("c4_demo", data).examples
    assert [t.text for t in texts] == ["a document", "another"] and isinstance(texts[0], TextDocument)


@pytest.mark.parametrize("names, message", [
    ("identiy", "dataset 'identiy' is not in"),
    ("identiy", "did you mean 'identity'?"),
    ("hub", "is on a hub (hf_hub_url)"),
    ("escape", "is not a file in"),
    ("identity,dpo_demo", "holds preference data, the datasets before it conversation data"),
])
def test_what_cannot_be_read_is_named(data, names, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_named_datasets(names, data)


def test_a_config_names_datasets_in_its_dataset_dir(data, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model_name_or_path: m\ndataset: identity,alpaca_demo\ndataset_dir: data\noutput_dir: o\n")
    cfg = TrainConfig.from_file(config)
    assert cfg.dataset_dir == str(data) and is_dataset_names(cfg.dataset, cfg.dataset_dir)
    assert not is_dataset_names(str(data / "identity.json"), cfg.dataset_dir)  # a path stays a path
