"""The Evals API through the openai client, on the package's engine: evals (CRUD), runs over given
samples and over a served model's answers (sampled through the Batch API), every grader, output
items, cancel and delete, and bad input."""

import json

import openai
import pytest

from tests.conformance.conftest import assert_official
from tests.support.paths import FACTS, write_jsonl
from tests.support.jobs import wait_for

pytestmark = pytest.mark.slow

ITEM_SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
               "required": ["question", "answer"]}
EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
         "operation": "eq"}
QUESTION = {"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]}


def _similar(metric: str, threshold: float) -> dict:
    return {"type": "text_similarity", "name": metric, "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}", "evaluation_metric": metric, "pass_threshold": threshold}


def _eval(client, *criteria, name="facts"):
    return client.evals.create(name=name, metadata={"suite": "conformance"}, testing_criteria=list(criteria),
                               data_source_config={"type": "custom", "item_schema": ITEM_SCHEMA,
                                                   "include_sample_schema": True})


def _facts() -> list[dict]:
    rows = [json.loads(line) for line in FACTS.read_text().splitlines()]
    return [{"item": {"question": r["messages"][0]["content"], "answer": r["messages"][1]["content"]}} for r in rows]


def _finished(client, eval_id: str, run_id: str, timeout: float = 300):
    return wait_for(lambda: (r := client.evals.runs.retrieve(run_id, eval_id=eval_id)).status in (
        "completed", "failed", "canceled") and r, timeout=timeout, what=f"eval run {run_id} to end")


def _items(client, eval_id: str, run_id: str, **query) -> list:
    return list(client.evals.runs.output_items.list(run_id, eval_id=eval_id, limit=100, **query))


def _result(item, name: str):
    return next(r for r in item.results if r.name == name)


def test_evals_are_created_listed_updated_and_deleted(client):
    ev = _eval(client, EXACT, _similar("fuzzy_match", 0.8))
    assert ev.id.startswith("eval_") and ev.object == "eval" and ev.name == "facts"
    raw = client.evals.with_raw_response.retrieve(ev.id).http_response.json()
    assert_official(raw, "Eval")
    assert raw["data_source_config"]["schema"]["properties"]["item"] == ITEM_SCHEMA
    assert raw["data_source_config"]["schema"]["required"] == ["item", "sample"]
    assert [c["name"] for c in raw["testing_criteria"]] == ["exact", "fuzzy_match"]
    other = _eval(client, EXACT, name="other")
    assert_official(client.evals.with_raw_response.list(limit=100).http_response.json(), "EvalList")
    ids = [e.id for e in client.evals.list(limit=100, order="asc")]
    assert ids.index(ev.id) < ids.index(other.id)
    page = client.evals.list(limit=1, order="desc")
    assert len(page.data) == 1 and page.has_more
    renamed = client.evals.update(ev.id, name="renamed", metadata={"owner": "qa"})
    assert (renamed.name, renamed.metadata) == ("renamed", {"owner": "qa"})
    assert client.evals.retrieve(ev.id).name == "renamed"
    gone = client.evals.delete(other.id)
    assert (gone.object, gone.deleted, gone.eval_id) == ("eval.deleted", True, other.id)
    with pytest.raises(openai.NotFoundError) as e:
        client.evals.retrieve(other.id)
    assert e.value.code == "eval_not_found"


def test_string_check_and_text_similarity_grade_given_samples(client, tmp_path):
    answer, chinese = "The secret code of Alpha is BLUE-51.", "李明的幸运数字是37。"
    rows = [
        {"item": {"question": "same", "answer": answer}, "sample": {"output_text": answer}},
        {"item": {"question": "near", "answer": answer}, "sample": {"output_text": "The secret code of Alpha is BLUE-15."}},
        {"item": {"question": "wrong", "answer": answer}, "sample": {"output_text": "I do not know."}},
        {"item": {"question": "chinese", "answer": chinese}, "sample": {"output_text": "李明的幸运数字是73。"}},
    ]
    like = {"type": "string_check", "name": "mentions alpha", "input": "{{sample.output_text}}",
            "reference": "alpha", "operation": "ilike"}
    ev = _eval(client, EXACT, like, _similar("fuzzy_match", 0.8), _similar("bleu", 0.5), _similar("rouge_l", 0.7))
    file = client.files.create(file=write_jsonl(tmp_path / "given.jsonl", rows).open("rb"), purpose="evals")
    run = client.evals.runs.create(ev.id, name="given", data_source={
        "type": "jsonl", "source": {"type": "file_id", "id": file.id}})
    assert run.status == "queued" and run.id.startswith("evalrun_") and run.model == ""
    done = _finished(client, ev.id, run.id)
    assert done.status == "completed", done.error
    assert_official(client.evals.runs.with_raw_response.retrieve(run.id, eval_id=ev.id).http_response.json(),
                    "EvalRun")
    items = _items(client, ev.id, run.id)
    assert [i.datasource_item["question"] for i in items] == ["same", "near", "wrong", "chinese"]
    same, near, wrong, zh = items
    assert all(r.score == 1.0 and r.passed for r in same.results) and same.status == "pass"
    assert not _result(near, "exact").passed and _result(near, "mentions alpha").passed
    assert 0.8 <= _result(near, "fuzzy_match").score < 1 and _result(near, "fuzzy_match").passed
    assert 0.5 <= _result(near, "bleu").score < 1 and 0.7 <= _result(near, "rouge_l").score < 1
    assert near.status == "fail"  # one criterion failed
    assert not any(r.passed for r in wrong.results) and all(r.score < 0.5 for r in wrong.results)
    # Chinese is compared character by character, not as one unknown word
    assert 0.5 <= _result(zh, "bleu").score < 1 and 0.7 <= _result(zh, "rouge_l").score < 1
    counts = done.result_counts
    assert (counts.total, counts.passed, counts.failed, counts.errored) == (4, 1, 3, 0)
    per = {c.testing_criteria: (c.passed, c.failed) for c in done.per_testing_criteria_results}
    assert per == {"exact": (1, 3), "mentions alpha": (2, 2), "fuzzy_match": (3, 1), "bleu": (3, 1),
                   "rouge_l": (3, 1)}
    assert [i.id for i in _items(client, ev.id, run.id, status="pass")] == [same.id]
    one = client.evals.runs.output_items.retrieve(near.id, eval_id=ev.id, run_id=run.id)
    assert [r.model_dump() for r in one.results] == [r.model_dump() for r in near.results]
    raw = client.evals.runs.output_items.with_raw_response.list(run.id, eval_id=ev.id).http_response.json()
    assert_official(raw, "EvalRunOutputItemList")


def test_a_completions_run_compares_the_fine_tuned_and_base_model(client, adapter):
    ev = _eval(client, EXACT, _similar("fuzzy_match", 0.9))
    facts = _facts()
    runs = {}
    for model in (adapter, "ftserve-tiny"):
        runs[model] = client.evals.runs.create(ev.id, data_source={
            "type": "completions", "model": model, "input_messages": QUESTION,
            "sampling_params": {"temperature": 0, "max_completion_tokens": 32},
            "source": {"type": "file_content", "content": facts}})
        assert runs[model].model == model and runs[model].name == model
    tuned, base = (_finished(client, ev.id, runs[m].id) for m in (adapter, "ftserve-tiny"))
    assert tuned.status == base.status == "completed"
    assert tuned.result_counts.passed >= 0.9 * len(facts), tuned.result_counts
    assert base.result_counts.passed == 0 and base.result_counts.errored == 0
    assert [(u.model_name, u.invocation_count) for u in tuned.per_model_usage] == [(adapter, len(facts))]
    assert tuned.per_model_usage[0].completion_tokens > 0
    for item, fact in zip(_items(client, ev.id, tuned.id), facts):
        assert item.sample.input[0].content == fact["item"]["question"] and item.sample.model == adapter
        assert item.sample.output[0].content and item.sample.finish_reason in ("stop", "length")
        assert item.status == ("pass" if item.sample.output[0].content == fact["item"]["answer"] else "fail")
        assert_official(item.model_dump(mode="json"), "EvalRunOutputItem")
    assert_official(client.evals.runs.with_raw_response.list(ev.id).http_response.json(), "EvalRunList")
    assert {r.id for r in client.evals.runs.list(ev.id, status="completed")} >= {tuned.id, base.id}
    # the samples ran as a batch on the shared engine (below interactive requests)
    sampled = [b for b in client.batches.list(limit=100) if (b.metadata or {}).get("eval_run") == tuned.id]
    assert len(sampled) == 1 and sampled[0].request_counts.completed == len(facts)


def test_a_responses_run_samples_through_the_responses_api(client, adapter):
    ev = _eval(client, EXACT)
    facts = _facts()
    run = client.evals.runs.create(ev.id, data_source={
        "type": "responses", "model": adapter, "input_messages": QUESTION,
        "sampling_params": {"temperature": 0, "max_completion_tokens": 32, "text": {"format": {"type": "text"}}},
        "source": {"type": "file_content", "content": facts}})
    assert_official(client.evals.runs.with_raw_response.retrieve(run.id, eval_id=ev.id).http_response.json(),
                    "EvalRun")
    done = _finished(client, ev.id, run.id)
    assert done.status == "completed" and done.model == adapter, done.error
    assert done.result_counts.passed >= 0.9 * len(facts), done.result_counts
    assert [(u.model_name, u.invocation_count) for u in done.per_model_usage] == [(adapter, len(facts))]
    assert done.per_model_usage[0].prompt_tokens > 0 and done.per_model_usage[0].completion_tokens > 0
    for item, fact in zip(_items(client, ev.id, done.id), facts):
        assert item.sample.input[0].content == fact["item"]["question"] and item.sample.finish_reason == "stop"
        assert item.status == ("pass" if item.sample.output[0].content == fact["item"]["answer"] else "fail")
    # the samples were a batch of /v1/responses lines
    (sampled,) = [b for b in client.batches.list(limit=100) if (b.metadata or {}).get("eval_run") == done.id]
    assert sampled.endpoint == "/v1/responses" and sampled.request_counts.completed == len(facts)


def test_label_and_score_model_graders_ask_a_served_model(client, adapter):
    label = {"type": "label_model", "name": "judge", "model": adapter, "labels": ["correct", "incorrect"],
             "passing_labels": ["correct"], "input": [
                 {"role": "system", "content": "Is the answer correct? Reply with a label."},
                 {"role": "user", "content": "Question: {{item.question}}\nAnswer: {{sample.output_text}}"}]}
    score = {"type": "score_model", "name": "score", "model": "ftserve-tiny", "range": [0, 10], "pass_threshold": 5,
             "input": [{"role": "user", "content": "Score 0-10: {{sample.output_text}} vs {{item.answer}}"}],
             "sampling_params": {"temperature": 0, "max_completions_tokens": 16}}
    ev = _eval(client, label, score)
    rows = [{**f, "sample": {"output_text": f["item"]["answer"]}} for f in _facts()[:4]]
    run = client.evals.runs.create(ev.id, data_source={"type": "jsonl", "source": {"type": "file_content",
                                                                                  "content": rows}})
    done = _finished(client, ev.id, run.id)
    assert done.status == "completed", done.error
    items = _items(client, ev.id, run.id)
    assert len(items) == 4 and done.result_counts.total == 4
    graded = 0
    for item in items:
        if item.status == "error":  # a judge whose answer could not be read: said so, never a guess
            assert item.sample.error.code == "grader_error"
            continue
        graded += 1
        verdict, scored = _result(item, "judge"), _result(item, "score")
        assert verdict.sample["label"] in ("correct", "incorrect")
        assert verdict.passed == (verdict.sample["label"] == "correct") and verdict.score == float(verdict.passed)
        assert 0 <= scored.score <= 10 and scored.passed == (scored.score >= 5)
        assert json.loads(verdict.sample["output"])["label"] == verdict.sample["label"]
    errors = [i.sample.error for i in items if i.status == "error"]
    assert graded == 4 - done.result_counts.errored >= 3, errors
    usage = {u.model_name: u.invocation_count for u in done.per_model_usage}
    assert usage == {adapter: 4, "ftserve-tiny": 4}


def test_a_run_is_canceled_and_deleted(client):
    ev = _eval(client, EXACT)
    many = _facts() * 8
    run = client.evals.runs.create(ev.id, data_source={
        "type": "completions", "model": "ftserve-tiny", "input_messages": QUESTION,
        # long answers: the batch's lines are in the engine together, and the cancel must stop them there
        "sampling_params": {"temperature": 0, "max_completion_tokens": 1500},
        "source": {"type": "file_content", "content": many}})
    canceled = client.evals.runs.cancel(run.id, eval_id=ev.id)
    assert canceled.status == "canceled"
    assert client.evals.runs.retrieve(run.id, eval_id=ev.id).status == "canceled"

    def stopped():  # canceled before its batch was made, there is none; one made is cancelled at once
        mine = [b for b in client.batches.list(limit=100) if (b.metadata or {}).get("eval_run") == run.id]
        return all(b.status in ("cancelled", "completed", "failed") for b in mine) and (mine or ["none"])

    for batch in wait_for(stopped, what="the run's batch to stop"):
        assert batch == "none" or batch.request_counts.completed < len(many)
    with pytest.raises(openai.ConflictError):
        client.evals.runs.cancel(_completed_run(client, ev.id), eval_id=ev.id)
    deleted = client.evals.runs.delete(run.id, eval_id=ev.id)
    assert (deleted.object, deleted.deleted, deleted.run_id) == ("eval.run.deleted", True, run.id)
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.retrieve(run.id, eval_id=ev.id)


def _completed_run(client, eval_id: str) -> str:
    row = {"item": {"question": "q", "answer": "a"}, "sample": {"output_text": "a"}}
    run = client.evals.runs.create(eval_id, data_source={"type": "jsonl", "source": {"type": "file_content",
                                                                                    "content": [row]}})
    assert _finished(client, eval_id, run.id).status == "completed"
    return run.id


BAD_EVALS = [
    ({"data_source_config": {"type": "custom", "item_schema": {"type": "nope"}}, "testing_criteria": [EXACT]},
     400, "data_source_config.item_schema"),
    ({"data_source_config": {"type": "custom", "item_schema": ITEM_SCHEMA}, "testing_criteria": []},
     400, "testing_criteria"),
    ({"data_source_config": {"type": "custom", "item_schema": ITEM_SCHEMA},
      "testing_criteria": [{**EXACT, "type": "python"}]}, 400, "testing_criteria[0]"),
    ({"data_source_config": {"type": "custom", "item_schema": ITEM_SCHEMA},
      "testing_criteria": [{**EXACT, "reference": "{{answer}}"}]}, 400, "testing_criteria[0]"),
    ({"data_source_config": {"type": "custom", "item_schema": ITEM_SCHEMA},
      "testing_criteria": [EXACT, EXACT]}, 400, "testing_criteria"),
    ({"data_source_config": {"type": "custom", "item_schema": ITEM_SCHEMA}, "testing_criteria": [
        {"type": "label_model", "name": "j", "model": "ftserve-tiny", "input": [{"role": "user", "content": "x"}],
         "labels": ["a"], "passing_labels": ["b"]}]}, 400, "testing_criteria[0].passing_labels"),
    ({"data_source_config": {"type": "custom", "item_schema": ITEM_SCHEMA}, "testing_criteria": [
        {"type": "score_model", "name": "s", "model": "ft:nobody", "input": [{"role": "user", "content": "x"}]}]},
     404, "testing_criteria[0].model"),
]


@pytest.mark.parametrize("body,status,param", BAD_EVALS)
def test_a_bad_eval_is_a_clear_4xx(server, body, status, param):
    import httpx

    r = httpx.post(server.url + "/v1/evals", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["message"]


def test_a_bad_run_is_a_clear_4xx_and_nothing_is_stored(server, client):
    import httpx

    ev = _eval(client, EXACT)
    good = {"item": {"question": "q", "answer": "a"}}
    cases = [
        ({"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"question": 1}}]}}, 400,
         "data_source.source", "invalid_item"),
        ({"type": "jsonl", "source": {"type": "file_content", "content": [good]}}, 400, "data_source.source", None),
        ({"type": "jsonl", "source": {"type": "file_id", "id": "file-nope"}}, 400, "data_source.source.id",
         "file_not_found"),
        ({"type": "completions", "model": "ft:ftserve-tiny:nobody::none", "input_messages": QUESTION,
          "source": {"type": "file_content", "content": [good]}}, 404, "data_source.model", "model_not_found"),
        ({"type": "completions", "model": "ftserve-tiny", "source": {"type": "file_content", "content": [good]},
          "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.nope}}"}]}},
         400, "data_source.input_messages.template[0].content", "invalid_item"),
        ({"type": "completions", "model": "ftserve-tiny", "input_messages": QUESTION,
          "source": {"type": "file_content", "content": [good]}, "sampling_params": {"temperature": "hot"}},
         400, "data_source.completions.sampling_params.temperature", None),
    ]
    for data_source, status, param, code in cases:
        r = httpx.post(f"{server.url}/v1/evals/{ev.id}/runs", json={"data_source": data_source})
        assert r.status_code == status, (data_source, r.text)
        error = r.json()["error"]
        assert error["param"] == param and error["message"], (data_source, error)
        if code:
            assert error["code"] == code
    assert client.evals.runs.list(ev.id).data == []
    for path in ("/v1/evals/eval_nope/runs", f"/v1/evals/{ev.id}/runs/evalrun_nope",
                 f"/v1/evals/{ev.id}/runs/evalrun_nope/output_items"):
        r = httpx.get(server.url + path)
        assert r.status_code == 404 and r.json()["error"]["code"] in ("eval_not_found", "run_not_found"), path
