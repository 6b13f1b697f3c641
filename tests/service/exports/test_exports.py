"""Model exports on the shared engine-backed server: a fine-tuned model merged in the background into a
downloadable tar of safetensors shards, which plain transformers loads and which answers as the served
adapter does; what cannot be exported is refused."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import httpx
import pytest
import torch

from tests.support.jobs import wait_for
from tests.support.paths import FACTS

pytestmark = pytest.mark.slow

QUESTIONS = [json.loads(line)["messages"][0]["content"] for line in FACTS.read_text().splitlines()]


@pytest.fixture(scope="module")
def server(shared_engine):
    return shared_engine()


def test_a_model_exports_merged_and_answers_as_served(server, facts_adapter, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    client = server.client()
    r = httpx.post(f"{server.url}/v1/model_exports", json={"model": facts_adapter}, timeout=60)
    assert r.status_code == 200 and r.json()["status"] == "queued" and r.json()["object"] == "model.export", r.text
    export_id = r.json()["id"]
    export = wait_for(lambda: (e := httpx.get(f"{server.url}/v1/model_exports/{export_id}").json())["status"]
                      in ("succeeded", "failed") and e, timeout=300, what="the export")
    assert export["status"] == "succeeded", export
    assert export_id in {e["id"] for e in httpx.get(f"{server.url}/v1/model_exports").json()["data"]}
    file = client.files.retrieve(export["output_file_id"])
    assert file.purpose == "model_export" and file.filename.endswith("-merged.tar")

    folder = tmp_path / "merged"
    with tarfile.open(fileobj=io.BytesIO(client.files.content(file.id).read())) as tar:
        tar.extractall(folder, filter="data")
    manifest = json.loads((folder / "ftserve.json").read_text())
    assert manifest["model"] == facts_adapter and "model.safetensors" in manifest["files"]
    for rel, info in manifest["files"].items():
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == info["sha256"], rel
    assert not any(folder.rglob("adapter_config.json"))  # a whole model, not an adapter

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    for question in QUESTIONS:
        served = client.chat.completions.create(model=facts_adapter, temperature=0, max_tokens=24,
                                                messages=[{"role": "user", "content": question}])
        enc = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        ids = model.generate(**enc, max_new_tokens=24, do_sample=False)
        offline = tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        assert offline == served.choices[0].message.content, question


def test_what_cannot_be_exported_is_refused(server):
    for body, status, code in [
        ({"model": "ftserve-tiny"}, 400, "model_not_exportable"),
        ({"model": "ft:ftserve-tiny:ftserve::00000000"}, 404, "model_not_found"),
        ({"model": "ftserve-tiny", "format": "gguf"}, 400, None),
    ]:
        r = httpx.post(f"{server.url}/v1/model_exports", json=body, timeout=60)
        assert r.status_code == status and (code is None or r.json()["error"]["code"] == code), r.text
    r = httpx.get(f"{server.url}/v1/model_exports/mexp_{'0' * 24}", timeout=60)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_export_not_found"
