"""LLaMA-Factory's demo data shapes through the API, as its users upload them: JSON arrays (alpaca,
identity, glaive tool calls, ShareGPT preference pairs, KTO's labelled messages, c4's text), each
processed by the Files API and trained by a job of the matching method on a server without an engine.
(The rows are this test's own, in the shapes of LLaMA-Factory's data/*.json.)"""

import json

import pytest

from tests.support.jobs import wait_for_status

pytestmark = pytest.mark.slow

WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
QA = [("Who are you?", "I am Tiny, an assistant."), ("What is 2+2?", "It is 4."), ("Name a colour.", "Blue."),
      ("Say hello.", "Hello!")]

DEMOS = {
    "alpaca_en_demo.json": ("supervised", [{"instruction": q, "input": "", "output": a} for q, a in QA]),
    "identity.json": ("supervised", [{"instruction": q, "input": "", "output": a.replace("Tiny", "{{name}}")}
                                     for q, a in QA]),
    "glaive_toolcall_en_demo.json": ("supervised", [{"conversations": [
        {"from": "human", "value": "Weather in Paris?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
        {"from": "observation", "value": json.dumps({"sky": "sunny"})},
        {"from": "gpt", "value": "It is sunny in Paris."}], "tools": json.dumps([WEATHER])}] * 4),
    "dpo_en_demo.json": ("dpo", [{"conversations": [{"from": "human", "value": q}],
                                  "chosen": {"from": "gpt", "value": a}, "rejected": {"from": "gpt", "value": "No."}}
                                 for q, a in QA]),
    "kto_en_demo.json": ("kto", [{"messages": [{"content": q, "role": "user"}, {"content": a, "role": "assistant"}],
                                  "label": good} for q, a in QA for good in (True, False)]),
    "c4_demo.json": ("continued_pretraining", [{"text": f"{q} {a}"} for q, a in QA]),
}


@pytest.mark.parametrize("name", list(DEMOS))
def test_a_llamafactory_demo_shape_uploads_and_trains(client, name, tmp_path):
    method, rows = DEMOS[name]
    path = tmp_path / name
    path.write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    with path.open("rb") as f:
        file = client.files.create(file=f, purpose="fine-tune")
    assert file.status == "processed", file.status_details
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=file.id, seed=1, method={
        "type": method, method: {"hyperparameters": {"n_epochs": 1, "batch_size": 2}}})
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=300)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model
