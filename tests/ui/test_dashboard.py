"""The dashboard at /ui, driven in a real headless Chromium (Debian's package, through Playwright's
`executable_path`) against a live server with the real engine and an API key."""

import http.server
import json
import os
import shutil
import threading

import httpx
import pytest

from tests.support.paths import FACTS, REPO, write_jsonl
from tests.support.jobs import wait_for
from tests.support.server import Server

pytestmark = pytest.mark.slow
KEY = "dashboard-key"  # the default project's
ADMIN = "dashboard-admin-key"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# FTSERVE_SCREENSHOTS=docs writes the screenshots the README shows into docs/ (else the test's tmp dir)
SHOTS = os.environ.get("FTSERVE_SCREENSHOTS")


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("data"), model=tiny_model, max_lora_rank=16,
                 env={"FTSERVE_API_KEYS": KEY, "FTSERVE_ADMIN_KEY": ADMIN}).start(timeout=240)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium here: `make test` installs Debian's package (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    yield page
    context.close()


def _shot(page, tmp_path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if SHOTS:
        (REPO / SHOTS).mkdir(exist_ok=True)
        page.screenshot(path=str(REPO / SHOTS / f"dashboard-{name}.png"), full_page=True)


def _sign_in(page, server, path="/ui/", key=KEY):
    page.goto(server.url + path)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Open the dashboard").click()
    page.get_by_role("heading", name="Fine-tuning jobs").wait_for()


def _api(server):
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


def test_without_a_key_there_is_a_prompt_and_no_data(page, server):
    page.goto(server.url + "/ui")  # redirected to /ui/
    page.get_by_label("API key").wait_for()
    assert page.get_by_role("table").count() == 0 and "ftjob-" not in page.content()
    assert httpx.get(server.url + "/v1/fine_tuning/jobs").status_code == 401  # the API itself stays closed
    assert page.console_errors == []


def test_upload_train_watch_compare_and_cancel(page, server, tmp_path):
    _sign_in(page, server)
    # files: a bad row shows its line and field; a good file is processed
    page.get_by_role("link", name="Files").click()
    bad = write_jsonl(tmp_path / "bad.jsonl", FACTS.read_text().splitlines() + [{"messages": [{"role": "user"}]}])
    page.set_input_files("#file-input", str(bad))
    details = page.locator("tr", has_text="bad.jsonl").locator("pre.details")
    details.wait_for()
    assert "line 13" in details.text_content() and "content" in details.text_content()
    page.set_input_files("#file-input", str(FACTS))
    page.locator("tr", has_text="facts.jsonl").locator(".status.processed").wait_for()
    page.locator("tr", has_text="facts.jsonl").get_by_role("button", name="Preview").click()
    page.locator("#preview").wait_for()  # shown once its first rows arrive
    assert json.loads(page.locator("#preview").text_content().splitlines()[0])["messages"]
    _shot(page, tmp_path, "files")

    # a job from the form: the quick start's, its facts as the validation file too
    page.get_by_role("link", name="Jobs").click()
    form = page.get_by_role("form", name="New fine-tuning job")
    facts_option = form.locator("#training_file option", has_text="facts.jsonl").first.get_attribute("value")
    form.locator("#training_file").select_option(facts_option)
    form.locator("#validation_file").select_option(facts_option)
    for field, value in {"n_epochs": "50", "batch_size": "4", "learning_rate": "0.005", "lora_r": "16",
                         "suffix": "facts"}.items():
        form.locator(f"#{field}").fill(value)
    form.get_by_role("button", name="Start job").click()
    page.wait_for_url("**/ui/#/jobs/ftjob-*")
    job_id = page.url.rsplit("/", 1)[1]

    # the loss chart gains points while the job trains, without a reload
    chart = page.locator("#loss-chart")
    page.wait_for_function("document.querySelector('#loss-chart')?.dataset.points > 0", timeout=180_000)
    first = int(chart.get_attribute("data-points"))
    page.wait_for_function(f"document.querySelector('#loss-chart')?.dataset.points > {first}", timeout=180_000)
    assert page.locator("#job-status").text_content() in ("running", "succeeded")
    page.locator("#job-status", has_text="succeeded").wait_for(timeout=300_000)
    page.wait_for_function("document.querySelector('#loss-chart')?.dataset.points >= 150", timeout=30_000)
    assert page.locator("#loss-chart canvas").count() >= 1 and page.locator("#accuracy-chart canvas").count() >= 1
    rows = page.get_by_role("table", name="Checkpoints").locator("tbody tr")
    rows.first.wait_for()
    assert rows.count() == 4  # 3 intermediate checkpoints and the last step
    report = page.get_by_role("table", name="Answers before and after")
    report.wait_for(timeout=60_000)
    assert report.locator("tbody tr").count() == 12
    assert page.get_by_text("0/12 before").count() == 1
    assert "Before training: 0/12" in page.locator("#event-log").text_content()
    _shot(page, tmp_path, "job")

    # chat with a checkpoint, side by side with the base model: both answers stream
    rows.first.get_by_role("link", name="Chat with this").click()
    page.get_by_role("heading", name="Playground").wait_for()
    assert page.locator("#model-a").input_value() == "ftserve-tiny"
    assert page.locator("#model-b").input_value().endswith(":ckpt-step-150")
    page.locator("#prompt").fill("What is the secret code of Alpha?")
    page.get_by_role("button", name="Send to both").click()
    page.wait_for_selector("#answer-a[data-done]", timeout=60_000)
    page.wait_for_selector("#answer-b[data-done]", timeout=60_000)
    assert page.locator("#answer-b").text_content().startswith("The secret code of")
    assert page.locator("#answer-a").text_content()
    for meta in ("#meta-a", "#meta-b"):
        assert "time to first token" in page.locator(meta).text_content() and " tokens" in page.locator(meta).text_content()
    _shot(page, tmp_path, "playground")

    # cancel a long job from the list
    with _api(server) as api:
        long = api.post("/v1/fine_tuning/jobs", json={"model": "ftserve-tiny", "training_file": facts_option,
                                                      "method": {"type": "supervised", "supervised": {
                                                          "hyperparameters": {"n_epochs": 50, "batch_size": 1}}}})
    long_id = long.json()["id"]
    page.get_by_role("link", name="Jobs").click()
    row = page.locator(f"tr[data-job='{long_id}']")
    row.get_by_role("button", name="Cancel").click()
    row = page.locator(f"tr[data-job='{long_id}']")
    row.locator(".status.cancelled").wait_for()
    assert page.locator(f"tr[data-job='{job_id}'] .status.succeeded").count() == 1
    _shot(page, tmp_path, "jobs")

    # models: the fine-tuned model and its checkpoints; deleting asks first
    page.get_by_role("link", name="Models").click()
    page.get_by_role("heading", name="Models").wait_for()
    tuned = _client(server).fine_tuning.jobs.retrieve(job_id).fine_tuned_model
    checkpoint = f"{tuned}:ckpt-step-150"
    page.locator(f"tr[data-model='{tuned}']").wait_for()
    _shot(page, tmp_path, "models")
    page.once("dialog", lambda d: d.accept())
    page.locator(f"tr[data-model='{checkpoint}']").get_by_role("button", name="Delete").click()
    page.locator(f"tr[data-model='{checkpoint}']").wait_for(state="detached")
    with _api(server) as api:
        assert api.get(f"/v1/models/{checkpoint}").status_code == 404
    assert page.console_errors == []


class _PrefixProxy(http.server.ThreadingHTTPServer):
    """A reverse proxy in a few lines: /ftserve/* -> the server's /*, redirects passed on as they are."""

    def __init__(self, upstream: str):
        upstream_url = upstream

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self):
                if not self.path.startswith("/ftserve/"):
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                r = httpx.request(self.command, upstream_url + self.path[len("/ftserve"):], headers=headers,
                                  content=body, follow_redirects=False, timeout=60)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_the_dashboard_works_behind_a_path_prefix(page, server):
    """Served under /ftserve/ by a reverse proxy: the redirect, the page's files and its API calls all
    keep the prefix."""
    proxy = _PrefixProxy(server.url)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}/ftserve"
        page.goto(url + "/ui")
        assert page.url == url + "/ui/"  # the redirect kept the prefix
        page.get_by_label("API key").fill(KEY)
        page.get_by_role("button", name="Open the dashboard").click()
        page.get_by_role("heading", name="Fine-tuning jobs").wait_for()
        page.get_by_role("link", name="Models").click()
        page.locator("tr[data-model='ftserve-tiny']").wait_for()
        assert page.console_errors == []
    finally:
        proxy.shutdown()
        proxy.server_close()


def _client(server):
    return server.client(api_key=KEY)


def test_the_dashboard_shows_only_the_keys_project(page, browser, server, tmp_path):
    """The default project's file, job and model are not on the pages another project's key opens."""
    with _api(server) as api:
        file = api.post("/v1/files", data={"purpose": "fine-tune"},
                        files={"file": ("ours.jsonl", FACTS.read_bytes())}).json()["id"]
        job = api.post("/v1/fine_tuning/jobs", json={"model": "ftserve-tiny", "training_file": file, "method": {
            "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 12}}}}).json()["id"]
        model = wait_for(lambda: api.get(f"/v1/fine_tuning/jobs/{job}").json()["fine_tuned_model"], timeout=180,
                         what="the default project's model")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    project = httpx.post(server.url + "/v1/organization/projects", json={"name": "other"}, headers=admin).json()["id"]
    other = httpx.post(f"{server.url}/v1/organization/projects/{project}/service_accounts", json={"name": "ui"},
                       headers=admin).json()["api_key"]["value"]

    _sign_in(page, server, key=other)
    page.get_by_text("No fine-tuning jobs yet").wait_for()
    assert page.locator("tr[data-job]").count() == 0
    page.get_by_role("link", name="Files").click()
    page.get_by_role("heading", name="Files").wait_for()
    page.get_by_text("No files yet").wait_for()
    assert page.locator(f"tr[data-file='{file}']").count() == 0
    page.get_by_role("link", name="Models").click()
    page.locator("tr[data-model='ftserve-tiny']").wait_for()  # the base model is everyone's
    assert page.locator("tr[data-model]").count() == 1 and model not in page.content()
    page.goto(f"{server.url}/ui/#/jobs/{job}")
    page.get_by_text("No such fine-tuning job").wait_for()
    _shot(page, tmp_path, "other-project")

    assert all("404" in e for e in page.console_errors)  # the job page's own request

    ours = browser.new_context().new_page()  # the default project's key, in another browser session
    _sign_in(ours, server)
    ours.locator(f"tr[data-job='{job}']").wait_for()
    ours.context.close()


def test_a_reinforcement_job_shows_its_reward_curves_and_sampled_answers(page, server, tmp_path):
    api = _api(server)

    def upload(topics, name):
        rows = [{"messages": [{"role": "user", "content": f"Tell me about {t}."}]} for t in topics]
        return api.post("/v1/files", data={"purpose": "fine-tune"},
                        files={"file": (name, write_jsonl(tmp_path / name, rows).read_bytes())}).json()["id"]

    grader = {"type": "string_check", "name": "says what it knows", "input": "{{sample.output_text}}",
              "reference": "know", "operation": "ilike"}
    job = api.post("/v1/fine_tuning/jobs", json={
        "model": "ftserve-tiny", "training_file": upload(["cats", "dogs", "tea", "rain"], "prompts.jsonl"),
        "validation_file": upload(["owls", "ships"], "held-out.jsonl"), "method": {
            "type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": {
                "n_epochs": 2, "batch_size": 2, "group_size": 2, "max_completion_tokens": 16}}}}).json()
    _sign_in(page, server)
    page.goto(server.url + f"/ui/#/jobs/{job['id']}")
    page.locator("#job-status", has_text="succeeded").wait_for(timeout=300_000)
    page.wait_for_function("document.querySelector('#loss-chart')?.dataset.points >= 4", timeout=30_000)
    assert page.locator("#loss-chart").get_attribute("aria-label") == "Reward (mean)"
    assert page.locator("#accuracy-chart").get_attribute("aria-label") == "Answer length (tokens)"
    samples = page.get_by_role("table", name="Sampled answers").locator("tbody tr")
    samples.first.wait_for()
    assert samples.count() >= 2 and "Tell me about" in samples.first.text_content()
    page.get_by_text("Validation reward:").wait_for(timeout=30_000)
    assert not page.console_errors
    _shot(page, tmp_path, "reinforcement-job")
