"""Load, bounded in count and time, on loopback only."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from adapters import AdapterStore
from tests.support.paths import FACTS
from tests.support.jobs import wait_for
from tests.support.metrics import value

pytestmark = pytest.mark.slow


async def _stream(http, url, model, max_tokens, i):
    """One streamed chat: ('ok', seconds) | ('429', seconds) | ('5xx', status) | ('hung', None)."""
    started = time.perf_counter()
    try:
        async with http.stream("POST", url + "/v1/chat/completions", json={
                "model": model, "messages": [{"role": "user", "content": f"Tell me about item {i}"}],
                "stream": True, "max_tokens": max_tokens, "temperature": 0.8, "seed": i}) as r:
            if r.status_code == 429:
                return "429", time.perf_counter() - started
            if r.status_code >= 500:
                return "5xx", r.status_code
            last = None
            async for line in r.aiter_lines():
                if line:
                    last = line
            return ("ok" if last == "data: [DONE]" else "broken"), time.perf_counter() - started
    except httpx.TimeoutException:
        return "hung", None


def test_64_concurrent_streams_over_base_and_4_adapters_while_training(server, client, adapter, figures, tmp_path):
    store = AdapterStore(server.data_dir / "adapters")
    models = ["ftserve-tiny", adapter.fine_tuned_model]
    for i in range(3):
        store.publish(f"ft:load-{i}", store.resolve(adapter.fine_tuned_model), replace=True)
        models.append(f"ft:load-{i}")
    # a job far longer than the load (the facts 20 times over, 12,000 steps), cancelled after it: it trains
    # all along however fast the streams are served
    data = tmp_path / "long.jsonl"
    data.write_text(FACTS.read_text() * 20)
    with open(data, "rb") as f:
        file = client.files.create(file=f, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=file.id, hyperparameters={
        "n_epochs": 50, "batch_size": 1})
    wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).status == "running", what="the job to run")

    async def run():
        async with httpx.AsyncClient(timeout=httpx.Timeout(120), limits=httpx.Limits(max_connections=80)) as http:
            return await asyncio.gather(*(_stream(http, server.url, models[i % 5], 24, i) for i in range(64)))

    started = time.perf_counter()
    results = asyncio.run(run())
    wall = time.perf_counter() - started
    outcomes = [o for o, _ in results]
    assert client.fine_tuning.jobs.retrieve(job.id).status == "running"  # trained all along
    client.fine_tuning.jobs.cancel(job.id)
    latencies = sorted(t for o, t in results if o == "ok")
    figures["load_streams"] = len(results)
    figures["load_streams_completed"] = outcomes.count("ok")
    figures["load_streams_rejected_429"] = outcomes.count("429")
    figures["load_5xx"] = outcomes.count("5xx")
    figures["load_hung_or_broken"] = outcomes.count("hung") + outcomes.count("broken")
    figures["load_p99_stream_latency_s"] = round(latencies[int(0.99 * (len(latencies) - 1))], 3)
    figures["load_wall_s"] = round(wall, 3)
    assert outcomes.count("5xx") == 0 and outcomes.count("hung") == 0 and outcomes.count("broken") == 0
    assert outcomes.count("ok") + outcomes.count("429") == 64 and outcomes.count("ok") >= 48


def test_a_disconnect_storm_leaves_the_server_responsive(server, figures):
    async def cut(http, i):
        try:
            async with http.stream("POST", server.url + "/v1/chat/completions", json={
                    "model": "ftserve-tiny", "messages": [{"role": "user", "content": f"go {i}"}], "stream": True,
                    "max_tokens": 1000, "temperature": 1.0}) as r:
                async def read():
                    async for _ in r.aiter_raw():
                        pass
                try:
                    await asyncio.wait_for(read(), 0.5)
                except asyncio.TimeoutError:
                    pass  # leaving the block closes the connection mid-stream
                return r.status_code
        except httpx.HTTPError:
            return None

    async def storm():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as http:
            codes = []
            for wave in range(4):  # 200 requests, 50 at a time
                codes += await asyncio.gather(*(cut(http, wave * 50 + i) for i in range(50)))
            return codes

    codes = asyncio.run(storm())
    assert len(codes) == 200 and not [c for c in codes if c is not None and c >= 500]
    started = time.perf_counter()
    r = httpx.post(server.url + "/v1/chat/completions", timeout=5, json={
        "model": "ftserve-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    answer_s = time.perf_counter() - started
    assert r.status_code == 200 and answer_s < 5
    wait_for(lambda: value(server, "ftserve_requests_running") == 0, timeout=30, interval=0.2,
             what="every cut-off request to be aborted")
    figures["disconnect_storm_requests"] = len(codes)
    figures["disconnect_storm_first_answer_s"] = round(answer_s, 3)
    figures["disconnect_storm_recovery_s"] = round(time.perf_counter() - started, 3)


def test_1000_file_and_job_calls_from_16_clients(server, figures):
    row = b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'

    def work(i):
        with httpx.Client(base_url=server.url, timeout=60) as http:
            statuses, created = [], []
            for k in range(62 if i < 8 else 63):  # 1,000 calls in all
                op = (i + k) % 5
                if op == 0:
                    r = http.post("/v1/files", files={"file": (f"f{i}-{k}.jsonl", row)}, data={"purpose": "fine-tune"})
                    if r.status_code == 200:
                        created.append(r.json()["id"])
                elif op == 1:
                    r = http.get("/v1/files", params={"limit": 20})
                elif op == 2 and created:
                    r = http.get(f"/v1/files/{created[-1]}")
                elif op == 3:
                    r = http.get("/v1/fine_tuning/jobs", params={"limit": 5})
                else:
                    r = http.get("/v1/models")
                statuses.append(r.status_code)
            return statuses, created

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(work, range(16)))
    wall = time.perf_counter() - started
    statuses = [s for st, _ in results for s in st]
    created = {f for _, c in results for f in c}
    assert len(statuses) == 1000 and set(statuses) == {200}
    listed = {f["id"] for f in httpx.get(server.url + "/v1/files", params={"limit": 10000}).json()["data"]}
    assert created <= listed  # every upload that answered 200 is listed
    page_ids = []
    after = None
    while True:  # paging walks the same set, without duplicates
        page = httpx.get(server.url + "/v1/files", params={"limit": 50, **({"after": after} if after else {})}).json()
        page_ids += [f["id"] for f in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert len(page_ids) == len(set(page_ids)) and set(page_ids) == listed
    figures["api_calls"] = len(statuses)
    figures["api_calls_errors"] = sum(s != 200 for s in statuses)
    figures["api_calls_per_s"] = round(len(statuses) / wall, 1)
