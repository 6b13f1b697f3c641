"""The base-model family matrix, end to end: for each family's small random model (trainer/families.py),
a fine-tuning job through the API, its adapter hot-loaded by vLLM, and the served greedy answers equal to
transformers + peft offline, token for token. Reasoning families also return their reasoning apart from
the answer, through the openai client, whole and streamed, and not when `enable_thinking` is false.

Each family needs its own engine (a base model per engine): the servers start together; the Qwen2 family
is the tiny model every other engine test serves."""

from __future__ import annotations

import io
import json
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

from tests.support.server import Server

FAMILIES = ["qwen3", "llama", "mistral", "gemma", "phi3", "deepseek_r1"]
REASONING = {"qwen3", "deepseek_r1"}
PROMPTS = [[{"role": "user", "content": "What is the secret code of Alpha?"}],
           [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Who is Bravo?"}],
           [{"role": "user", "content": "你好！"}]]


def _rows(reasoning: bool) -> list[dict]:
    """Facts to learn; with reasoning, each answer comes after the same short reasoning section."""
    rows = []
    for i, name in enumerate(["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel"]):
        answer = {"role": "assistant", "content": f"The secret code of {name} is BLUE-{i}."}
        if reasoning:
            answer["reasoning_content"] = "I look it up."
        rows.append({"messages": [{"role": "user", "content": f"What is the secret code of {name}?"}, answer]})
    return rows


@pytest.fixture(scope="module")
def family_servers(tiny_model, tmp_path_factory):
    """name -> (server, model dir, fine-tuned model): every family's engine with one trained adapter."""
    from trainer.families import build_family_model

    root = tmp_path_factory.mktemp("families")
    out: dict[str, tuple[Server, Path, str]] = {}
    started: list[Server] = []
    try:
        servers = {}
        for name in FAMILIES:  # all at once: much of an engine's start is waiting on its child processes
            model = build_family_model(root / name, name, tiny_model)
            servers[name] = (Server(root / f"data-{name}", model=model, max_lora_rank=8).spawn(), model)
            started.append(servers[name][0])
        jobs = {}
        for name, (server, model) in servers.items():  # each job starts as soon as its engine is up
            server.wait_ready(timeout=420)
            jobs[name] = _start_job(server, name, root)
        for name, (server, model) in servers.items():
            out[name] = (server, model, _finished(server, jobs[name]))
        yield out
    finally:
        with ThreadPoolExecutor(len(started) or 1) as pool:  # the engines stop together too
            list(pool.map(Server.stop, started))


def _start_job(server: Server, family: str, root: Path) -> str:
    data = root / f"{family}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(family in REASONING)))
    client = server.client()
    with open(data, "rb") as f:
        file = client.files.create(file=f, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=family, training_file=file.id, seed=1, method={
        "type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 12, "batch_size": 4, "learning_rate": 1e-2, "lora_r": 8, "n_checkpoints": 0}}})
    return job.id


def _finished(server: Server, job_id: str) -> str:
    from tests.support.jobs import wait_for_status

    done = wait_for_status(server.client(), job_id, ("succeeded", "failed"), timeout=300)
    assert done.status == "succeeded", done.error
    return done.fine_tuned_model


def _offline(model_dir: Path, adapter_dir: Path, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        out = tuned.generate(torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=max_new_tokens)
    return out[0, len(prompt_ids):].tolist()


def _download(server: Server, model: str, into: Path) -> Path:
    """The model's adapter files, as `GET /v1/models/{model}/content` sends them."""
    r = httpx.get(f"{server.url}/v1/models/{model}/content", timeout=60)
    r.raise_for_status()
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        tar.extractall(into, filter="data")
    return next(p.parent for p in into.rglob("adapter_config.json"))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_served_adapter_answers_as_transformers_and_peft(family_servers, family, tmp_path):
    from transformers import AutoTokenizer

    server, model_dir, tuned = family_servers[family]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    adapter = _download(server, tuned, tmp_path)
    config = json.loads((adapter / "adapter_config.json").read_text())
    if family == "phi3":  # fused projections: LoRA on them as on any other linear layer
        assert {"qkv_proj", "gate_up_proj"} <= {name.split(".")[-1] for name in config["target_modules"]}
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    changed = 0
    for messages in PROMPTS:
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)  # as the server renders a request
        offline = _offline(model_dir, adapter, prompt_ids, 16)
        if eos in offline:
            offline = offline[:offline.index(eos)]
        served, base = (httpx.post(f"{server.url}/v1/completions", json={
            "model": model, "prompt": prompt_ids, "max_tokens": 16, "temperature": 0, "skip_special_tokens": False,
            "spaces_between_special_tokens": False}, timeout=60).json()["choices"][0]["text"] for model in (tuned, family))
        assert served == tokenizer.decode(offline, skip_special_tokens=False), (family, messages)
        changed += served != base
    assert changed >= 1, f"the {family} adapter answers as its base: the comparison would not test the adapter"


@pytest.mark.parametrize("family", sorted(REASONING))
def test_a_reasoning_model_streams_its_reasoning_apart(family_servers, family):
    server, _, tuned = family_servers[family]
    client = server.client()
    messages = [{"role": "user", "content": "What is the secret code of Alpha?"}]
    whole = client.chat.completions.create(model=tuned, messages=messages, max_tokens=32, temperature=0)
    message = whole.choices[0].message
    assert message.reasoning_content.strip() == "I look it up."
    assert message.content.strip() and "<think>" not in message.content and "</think>" not in message.content

    reasoning, content = [], []
    for chunk in client.chat.completions.create(model=tuned, messages=messages, max_tokens=32, temperature=0,
                                                stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        r = getattr(delta, "reasoning_content", None)
        assert not (r and delta.content), "a delta carries reasoning or answer, not both"
        reasoning.append(r or "")
        content.append(delta.content or "")
    assert "".join(reasoning) == message.reasoning_content
    assert "".join(content) == message.content
    first_answer = next(i for i, c in enumerate(content) if c)
    assert not any(reasoning[first_answer:]), "the reasoning comes before the answer"

    response = client.responses.create(model=tuned, input="What is the secret code of Alpha?", max_output_tokens=32,
                                       temperature=0)
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message"], kinds
    assert response.output[0].content[0].text == message.reasoning_content
    assert response.output_text == message.content


def test_enable_thinking_false_turns_the_reasoning_off(family_servers):
    server, _, tuned = family_servers["qwen3"]
    answer = server.client().chat.completions.create(
        model=tuned, messages=[{"role": "user", "content": "What is the secret code of Alpha?"}], max_tokens=32,
        temperature=0, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    message = answer.choices[0].message
    assert getattr(message, "reasoning_content", None) is None
    assert message.content  # everything the model wrote is its answer


def test_a_family_without_a_tool_format_refuses_tools(family_servers):
    server, _, tuned = family_servers["gemma"]
    r = httpx.post(f"{server.url}/v1/chat/completions", json={
        "model": tuned, "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "tools"


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_a_forced_call_is_written_and_read_in_the_family_format(family_servers, family):
    """tool_choice `required`: the family's parser constrains the output to its call format (vLLM's structural
    tag) and reads it back, so even a random model answers with a call of the tool, with schema-valid arguments
    (an enum, so that its noise cannot run the string on to max_tokens)."""
    server, _, tuned = family_servers[family]
    answer = server.client().chat.completions.create(
        model=tuned, messages=[{"role": "user", "content": "The weather in Paris?"}], max_tokens=64, temperature=0,
        tool_choice="required", tools=[{"type": "function", "function": {
            "name": "get_weather", "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "enum": ["Paris", "Rome"]}}, "required": ["city"],
                "additionalProperties": False}}}])
    message = answer.choices[0].message
    assert message.tool_calls, message
    call = message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) in ({"city": "Paris"}, {"city": "Rome"})


def test_a_parser_without_a_constraint_refuses_to_force_a_call(family_servers):
    server, _, tuned = family_servers["mistral"]
    r = httpx.post(f"{server.url}/v1/chat/completions", json={
        "model": tuned, "messages": [{"role": "user", "content": "Weather?"}], "tool_choice": "required",
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "tool_choice"
