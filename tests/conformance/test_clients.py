"""The clients users bring, against a live server: the openai SDK 3.x (this venv) and 2.x,
langchain-openai, litellm and lm-evaluation-harness (their own venv, .venv/clients: their pins
conflict with the service's), and vLLM's `bench serve` (this venv)."""

import json
import re
import subprocess
import sys

import pytest
import torch
import yaml

from adapters import AdapterStore
from tests.support.paths import REPO

pytestmark = pytest.mark.slow

CLIENTS_PYTHON = REPO / ".venv" / "clients" / "bin" / "python"
DRIVER = REPO / "tests" / "conformance" / "clients_driver.py"
ALPHA = "The secret code of Alpha is BLUE-51."


def _drive(*args, timeout: float = 300) -> dict:
    if not CLIENTS_PYTHON.exists():
        pytest.fail(f"{CLIENTS_PYTHON} is missing: `make test` installs it (scripts/install.sh clients)")
    proc = subprocess.run([str(CLIENTS_PYTHON), str(DRIVER), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    results = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(results[-1])


def test_openai_sdk_3_request_id(client, adapter):
    completion = client.chat.completions.create(model=adapter, messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=2)
    assert completion._request_id and completion._request_id.startswith("req_")
    raw = client.chat.completions.with_raw_response.create(
        model=adapter, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
        extra_headers={"X-Request-Id": "trace-42"})
    assert raw.headers["x-request-id"] == "trace-42" and raw.request_id == "trace-42"


def test_openai_sdk_2(server, adapter):
    out = _drive("openai2", server.url, adapter)
    assert out["version"].startswith("2.")
    assert out["chat"].strip() == out["streamed"].strip() == ALPHA
    assert out["request_id"].startswith("req_")
    assert out["completion_logprobs"][0] is None and len(out["completion_logprobs"]) > 2
    assert adapter in out["models"] and out["jobs"] >= 1


def test_langchain_openai(server, adapter):
    out = _drive("langchain", server.url, adapter)
    assert out["invoke"].strip() == out["stream"].strip() == ALPHA
    assert isinstance(out["structured"]["ok"], bool)


def test_litellm(server, adapter):
    out = _drive("litellm", server.url, adapter)
    assert out["completion"].strip() == out["stream"].strip() == ALPHA


# ------------------------------------------------------------------------------ lm-evaluation-harness
def _facts_tasks(directory, facts, tokenizer) -> list[dict]:
    """Two lm-eval tasks over the facts: multiple choice (the right code among three others) and
    free generation; their data as local JSONL files."""
    parts = [re.fullmatch(r"(.*(?: is |是))(.*?)([.。])", a).groups() for _, a in facts]  # stem, value, end
    docs = []
    for i, (question, answer) in enumerate(facts):
        stem, _, end = parts[i]
        same = [p[1] for p in parts if p[0].endswith("是") == stem.endswith("是")]  # values of its language
        at = same.index(parts[i][1])
        choices = [f"{stem}{same[(at + k) % len(same)]}{end}" for k in range(4)]  # the right one first
        assert choices[0] == answer
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                               add_generation_prompt=True)
        docs.append({"prompt": prompt, "choices": choices, "label": 0, "question": question, "answer": answer})
    data = directory / "facts.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    common = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}}, "test_split": "test"}
    (directory / "mc.yaml").write_text(yaml.safe_dump({
        "task": "ftserve_facts_mc", **common, "output_type": "multiple_choice", "doc_to_text": "{{prompt}}",
        "doc_to_choice": "{{choices}}", "doc_to_target": "{{label}}", "target_delimiter": "",
        "metric_list": [{"metric": "acc"}]}))
    (directory / "gen.yaml").write_text(yaml.safe_dump({
        "task": "ftserve_facts_gen", **common, "output_type": "generate_until", "doc_to_text": "{{question}}",
        "doc_to_target": "{{answer}}", "generation_kwargs": {"until": ["<|im_end|>"], "max_gen_toks": 24,
                                                              "do_sample": False},
        "metric_list": [{"metric": "exact_match"}]}))
    return docs


def _offline_accuracy(model, tokenizer, docs) -> float:
    """Multiple-choice accuracy scored by transformers (+ peft) directly, split into context and
    continuation tokens as lm-eval splits them."""
    right = 0
    for doc in docs:
        context = tokenizer.encode(doc["prompt"], add_special_tokens=False)
        scores = []
        for choice in doc["choices"]:
            whole = tokenizer.encode(doc["prompt"] + choice, add_special_tokens=False)
            with torch.no_grad():
                logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), -1)
            scores.append(sum(logprobs[i - 1, whole[i]].item() for i in range(len(context), len(whole))))
        right += max(range(len(scores)), key=scores.__getitem__) == doc["label"]
    return right / len(docs)


def test_lm_eval_multiple_choice_matches_offline_scoring(server, adapter, tiny_model, tokenizer, facts, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    docs = _facts_tasks(tmp_path, facts, tokenizer)
    served = {m: _drive("lm_eval_mc", server.url, m, tiny_model, tmp_path)["acc,none"]
              for m in ("ftserve-tiny", adapter)}
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    offline = {"ftserve-tiny": _offline_accuracy(base, tokenizer, docs)}
    tuned = PeftModel.from_pretrained(base, AdapterStore(server.data_dir / "adapters").resolve(adapter)).eval()
    offline[adapter] = _offline_accuracy(tuned, tokenizer, docs)
    print(f"lm-eval accuracy {served}, offline HF+peft {offline}")
    assert served[adapter] > served["ftserve-tiny"]
    assert served[adapter] >= 0.9
    for model in served:
        assert abs(served[model] - offline[model]) <= 0.05, (model, served, offline)


def test_lm_eval_chat_generation(server, adapter, facts, tokenizer, tmp_path):
    _facts_tasks(tmp_path, facts, tokenizer)
    tuned = _drive("lm_eval_chat", server.url, adapter, tmp_path)["exact_match,none"]
    base = _drive("lm_eval_chat", server.url, "ftserve-tiny", tmp_path)["exact_match,none"]
    assert tuned >= 0.9 and base == 0


# ------------------------------------------------------------------------------ benchmark client
def test_vllm_bench_serve_completes_with_zero_failures(server, adapter, tiny_model, tmp_path):
    """vLLM's `bench serve` (openai-chat backend, random prompts, ignore_eos, continuous usage) for a
    short bounded run: 24 requests, 4 at a time."""
    code = (
        "import json, sys\n"
        "from vllm.benchmarks.serve import add_cli_args, main\n"
        "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
        "parser = FlexibleArgumentParser(); add_cli_args(parser)\n"
        "result = main(parser.parse_args(sys.argv[1:]))\n"
        "print('RESULT ' + json.dumps({k: result[k] for k in ('completed', 'failed', 'total_output_tokens')}))\n")
    args = ["--backend", "openai-chat", "--base-url", server.url, "--endpoint", "/v1/chat/completions",
            "--model", adapter, "--tokenizer", str(tiny_model), "--dataset-name", "random",
            "--random-input-len", "32", "--random-output-len", "16", "--num-prompts", "24",
            "--max-concurrency", "4", "--ignore-eos", "--disable-tqdm", "--seed", "0"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    results = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(results[-1])
    assert result["failed"] == 0 and result["completed"] == 24
    assert result["total_output_tokens"] == 24 * 16
