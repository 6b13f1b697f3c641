"""Adapters in and out, on the shared engine-backed server: a trained model downloaded (API and `ftserve
download`) answers offline with transformers + peft exactly as it is served; adapters trained elsewhere
(a plain peft script, `ftserve train` with stage dpo) imported through `POST /v1/models` serve at once and
answer as they do offline; hostile archives are refused with nothing published."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest
import torch
from openai import BadRequestError, ConflictError, NotFoundError, OpenAI
from openai.types import Model

from tests.support.adapters import folder_files, peft_script_adapter, tar_of
from tests.support.paths import FACTS, REPO
from trainer.config import TrainConfig
from trainer.recipe import train

pytestmark = pytest.mark.slow

QUESTIONS = [json.loads(line)["messages"][0]["content"] for line in FACTS.read_text().splitlines()]


@pytest.fixture(scope="module")
def server(shared_engine):
    return shared_engine()


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return server.client()


@pytest.fixture(scope="module")
def tuned(facts_adapter) -> str:
    return facts_adapter


def served_answers(client: OpenAI, model: str) -> list[str]:
    return [client.chat.completions.create(model=model, temperature=0, max_tokens=24, messages=[
        {"role": "user", "content": q}]).choices[0].message.content for q in QUESTIONS]


def offline_answers(tiny_model: Path, adapter: Path) -> list[str]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                                      adapter).eval()
    out = []
    for q in QUESTIONS:
        enc = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        ids = model.generate(**enc, max_new_tokens=24, do_sample=False)
        out.append(tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return out


def upload(client: OpenAI, data: bytes, name: str = "adapter.tar.gz"):
    return client.files.create(file=(name, data), purpose="adapter")


def import_model(client: OpenAI, name: str, file_id: str) -> Model:
    return client.post("/models", body={"model": name, "file_id": file_id}, cast_to=Model)


def test_a_trained_model_downloads_and_answers_offline_as_served(client, server, tuned, tiny_model, tmp_path):
    r = httpx.get(f"{server.url}/v1/models/{tuned}/content", timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-tar" and int(r.headers["content-length"]) == len(r.content)
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        names = tar.getnames()
        assert names[0] == "ftserve.json" and {"adapter_config.json", "adapter_model.safetensors"} <= set(names)
        manifest = json.loads(tar.extractfile("ftserve.json").read())
        weights = tar.extractfile("adapter_model.safetensors").read()
    assert manifest["name"] == tuned and manifest["base_model"] == "ftserve-tiny" and set(manifest["files"]) == set(
        names[1:])
    assert manifest["method"] == "supervised" and manifest["job_id"].startswith("ftjob-")
    assert manifest["files"]["adapter_model.safetensors"]["sha256"] == hashlib.sha256(weights).hexdigest()

    # the command line: a folder, every file checked against ftserve.json
    out = tmp_path / "downloaded"
    proc = subprocess.run([sys.executable, "-m", "service.cli", "download", tuned, "-o", str(out), "--quiet",
                           "--base-url", server.url + "/v1"], check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    served = served_answers(client, tuned)
    assert sum(a.startswith("The secret code of") for a in served) >= 6, served  # it learnt something
    assert offline_answers(tiny_model, out) == served

    # a checkpoint too; the base model and a missing model are refused
    checkpoint = client.fine_tuning.jobs.checkpoints.list(manifest["job_id"]).data[-1]
    r = httpx.get(f"{server.url}/v1/models/{checkpoint.fine_tuned_model_checkpoint}/content", timeout=60)
    assert r.status_code == 200 and r.content[:12] == b"ftserve.json"
    r = httpx.get(f"{server.url}/v1/models/ftserve-tiny/content", timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_downloadable"
    r = httpx.get(f"{server.url}/v1/models/ft:ftserve-tiny:ftserve::00000000/content", timeout=60)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    proc = subprocess.run([sys.executable, "-m", "service.cli", "download", "ft:nope", "-o", str(tmp_path / "x"),
                           "--quiet", "--base-url", server.url + "/v1"], check=False, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and "404" in proc.stderr and not (tmp_path / "x").exists()


def test_a_plain_peft_adapter_imports_and_answers_as_offline(client, tiny_model, tmp_path):
    adapter = peft_script_adapter(tiny_model, tmp_path / "peft")
    file = upload(client, tar_of(folder_files(adapter)))
    assert file.status == "processed" and file.purpose == "adapter"
    model = import_model(client, "ft:ftserve-tiny:acme:tutorial", file.id)
    assert model.id == "ft:ftserve-tiny:acme:tutorial" and model.root == "ftserve-tiny"
    assert model.id in {m.id for m in client.models.list().data}
    offline = offline_answers(tiny_model, adapter)
    assert served_answers(client, model.id) == offline  # served the moment the call returned
    assert offline != served_answers(client, "ftserve-tiny")  # and it is not the base model's

    with pytest.raises(ConflictError) as refused:  # a name is taken once
        import_model(client, model.id, file.id)
    assert refused.value.body["code"] == "model_exists"
    # it downloads like a trained one, its method recorded as an import
    r = httpx.get(f"{client.base_url}models/{model.id}/content", timeout=60)
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        manifest = json.loads(tar.extractfile("ftserve.json").read())
    assert manifest["method"] == "import" and manifest["job_id"] is None
    assert client.models.delete(model.id).deleted
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model=model.id, messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def test_a_dpo_adapter_from_ftserve_train_imports_and_answers_as_offline(client, tiny_model, tmp_path):
    config = TrainConfig.from_mapping({
        "model_name_or_path": str(tiny_model), "served_model_name": "ftserve-tiny", "stage": "dpo",
        "dataset": str(REPO / "examples" / "pairs.jsonl"), "output_dir": str(tmp_path / "dpo"), "max_steps": 8,
        "per_device_train_batch_size": 4, "learning_rate": 5e-3, "lora_rank": 8, "num_threads": 1, "seed": 3})
    train(config, lambda event: None)
    adapter = tmp_path / "dpo" / "adapter"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in folder_files(adapter, prefix="").items():
            zf.writestr(name, data)
    model = import_model(client, "ft:ftserve-tiny:acme:dpo-v1", upload(client, buf.getvalue(), "dpo.zip").id)
    assert served_answers(client, model.id) == offline_answers(tiny_model, adapter)


def _safetensors(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in tensors.items()})


@pytest.fixture(scope="module")
def good(tiny_model, tmp_path_factory) -> dict[str, bytes]:
    """A valid adapter's two files (untrained), which each hostile case spoils in one way."""
    folder = peft_script_adapter(tiny_model, tmp_path_factory.mktemp("good") / "a", steps=0)
    return {"adapter_config.json": (folder / "adapter_config.json").read_bytes(),
            "adapter_model.safetensors": (folder / "adapter_model.safetensors").read_bytes()}


def _config(good, **changes) -> bytes:
    return json.dumps({**json.loads(good["adapter_config.json"]), **changes}).encode()


def _weights(good, change) -> bytes:
    from safetensors.torch import load

    tensors = load(good["adapter_model.safetensors"])
    change(tensors)
    return _safetensors(tensors)


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def _two_gb_zip(path: Path) -> bytes:
    """2 GB of zeros, deflated to ~2 MB: the upload passes, what it unpacks to does not."""
    info = zipfile.ZipInfo("adapter_model.safetensors")
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(info, "w", force_zip64=True) as f:
            zero = bytes(64 << 20)
            for _ in range(32):
                f.write(zero)
        zf.writestr("adapter_config.json", b"{}")
    return path.read_bytes()


HOSTILE = {
    "pickle": (lambda g, t: tar_of({"a/adapter_config.json": g["adapter_config.json"],
                                    "a/adapter_model.bin": b"\x80\x04cos\nsystem\n."}), 400, "pickle_not_allowed"),
    "dot-dot": (lambda g, t: tar_of({**g, "../evil.txt": b"x"}), 400, "unsafe_archive_member"),
    "absolute": (lambda g, t: tar_of({**g, "/etc/cron.d/evil": b"x"}), 400, "unsafe_archive_member"),
    "zip-dot-dot-and-absolute": (lambda g, t: _zip({**g, "../../evil.txt": b"x", "/tmp/evil.txt": b"x"}), 400,
                                 "unsafe_archive_member"),
    "symlink": (lambda g, t: tar_of(g, links={"keys": "/root/.ssh/id_rsa"}), 400, "unsafe_archive_member"),
    "rank-above-limit": (lambda g, t: tar_of({**g, "adapter_config.json": _config(g, r=32)}), 400,
                         "adapter_rank_too_large"),
    "absent-module": (lambda g, t: tar_of({**g, "adapter_model.safetensors": _weights(g, lambda w: w.update({
        "base_model.model.model.layers.0.self_attn.x_proj.lora_A.weight": torch.zeros(8, 256),
        "base_model.model.model.layers.0.self_attn.x_proj.lora_B.weight": torch.zeros(256, 8)}))}), 400,
        "unknown_target_module"),
    "shape-mismatch": (lambda g, t: tar_of({**g, "adapter_model.safetensors": _weights(g, lambda w: w.update({
        k: torch.zeros(v.shape[0], v.shape[1] // 2) for k, v in w.items() if "lora_A" in k}))}), 400,
        "adapter_shape_mismatch"),
    "another-base": (lambda g, t: tar_of({**g, "adapter_config.json": _config(
        g, base_model_name_or_path="Qwen/Qwen2.5-0.5B-Instruct")}), 400, "base_model_mismatch"),
    "unknown-config-key": (lambda g, t: tar_of({**g, "adapter_config.json": _config(g, lora_alhpa=16)}), 400,
                           "invalid_adapter_config"),
    "dora": (lambda g, t: tar_of({**g, "adapter_config.json": _config(g, use_dora=True)}), 400,
             "unsupported_adapter"),
    "not-safetensors": (lambda g, t: tar_of({**g, "adapter_model.safetensors": b"\x00" * 64}), 400,
                        "invalid_adapter_weights"),
    "not-an-archive": (lambda g, t: b"just some bytes", 400, "invalid_adapter_archive"),
    "2gb-over-the-limit": (lambda g, t: _two_gb_zip(t / "big.zip"), 413, "adapter_too_large"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_import_is_refused_and_nothing_is_published(client, server, good, tmp_path, case):
    make, status, code = HOSTILE[case]
    before = {m.id for m in client.models.list().data}
    file = upload(client, make(good, tmp_path), "a.zip" if "zip" in case else "a.tar.gz")
    name = f"ft:ftserve-tiny:acme:{case}"
    r = httpx.post(f"{server.url}/v1/models", json={"model": name, "file_id": file.id}, timeout=120)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert {m.id for m in client.models.list().data} == before
    assert not (server.data_dir / "evil.txt").exists() and not Path("/etc/cron.d/evil").exists()


def test_bad_import_requests_are_named(client, server, good):
    file = upload(client, tar_of(good))
    for body, status, code in [
        ({"model": "my-model", "file_id": file.id}, 400, "invalid_model_name"),  # not under ft:ftserve-tiny:
        ({"model": "ft:ftserve-tiny:acme:x:ckpt-step-3", "file_id": file.id}, 400, "invalid_model_name"),
        ({"model": "ft:ftserve-tiny:acme:x", "file_id": "file-" + "0" * 24}, 404, "file_not_found"),
        ({"model": "ft:ftserve-tiny:acme:x", "file_id": client.files.create(
            file=FACTS.open("rb"), purpose="fine-tune").id}, 400, "invalid_file_purpose"),
    ]:
        r = httpx.post(f"{server.url}/v1/models", json=body, timeout=60)
        assert r.status_code == status and r.json()["error"]["code"] == code, (body, r.text)
    # vLLM's runtime endpoints need the admin key (this server has none configured)
    r = httpx.post(f"{server.url}/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "/etc"}, timeout=60)
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_key_required"
    with pytest.raises(BadRequestError):
        import_model(client, "ft:ftserve-tiny:acme:../../x", file.id)
