"""Bad requests to the control plane (files and jobs), each with the 4xx and the parameter it must name:
the API tests send them to a server without an engine, the reliability tests to one under load."""

from tests.support.paths import FACTS

GOOD_CHAT = FACTS.read_bytes()


def _job(**overrides):
    return {"model": "ftserve-tiny", "training_file": "FILE", **overrides}


def _upload(name, content, purpose="fine-tune"):
    return {"files": {"file": (name, content)}, "data": {"purpose": purpose}}


# (id, method, path, request kwargs, status, expected param (or None), words the message must contain)
CASES = [
    ("files: no file part", "POST", "/v1/files", {"data": {"purpose": "fine-tune"}}, 400, "file", "file"),
    ("files: no purpose", "POST", "/v1/files", {"files": {"file": ("a.jsonl", GOOD_CHAT)}}, 400, "purpose", "purpose"),
    ("files: unknown purpose", "POST", "/v1/files", _upload("a.jsonl", GOOD_CHAT, "training"), 400, "purpose",
     "Invalid purpose 'training'"),
    ("files: empty file", "POST", "/v1/files", _upload("a.jsonl", b""), 400, "file", "empty"),
    ("files: json body instead of multipart", "POST", "/v1/files", {"json": {"purpose": "fine-tune"}}, 400, "file",
     "file"),
    ("files: unknown id", "GET", "/v1/files/file-doesnotexist", {}, 404, "id", "No such File object"),
    ("files: traversal-shaped id", "GET", "/v1/files/..%2F..%2Fetc%2Fpasswd", {}, 404, None, "Unknown request URL"),
    ("files: dotted id", "GET", "/v1/files/..", {}, 404, None, ""),
    ("files: unknown id content", "GET", "/v1/files/file-nope/content", {}, 404, "id", "No such File"),
    ("files: delete unknown", "DELETE", "/v1/files/file-nope", {}, 404, "id", "No such File"),
    ("files: limit out of range", "GET", "/v1/files?limit=0", {}, 400, "limit", "limit"),
    ("files: bad order", "GET", "/v1/files?order=sideways", {}, 400, "order", "order"),
    ("jobs: malformed json", "POST", "/v1/fine_tuning/jobs",
     {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, None, "not valid JSON"),
    ("jobs: missing model", "POST", "/v1/fine_tuning/jobs", {"json": {"training_file": "FILE"}}, 400, "model",
     "model"),
    ("jobs: unknown field", "POST", "/v1/fine_tuning/jobs", {"json": _job(epochs=3)}, 400, "epochs",
     "Unrecognized request argument"),
    ("jobs: unknown base model", "POST", "/v1/fine_tuning/jobs", {"json": _job(model="gpt-4o")}, 400, "model",
     "not available for fine-tuning"),
    ("jobs: unknown training file", "POST", "/v1/fine_tuning/jobs", {"json": _job(training_file="file-nope")}, 400,
     "training_file", "does not exist"),
    ("jobs: training file with bad rows", "POST", "/v1/fine_tuning/jobs", {"json": _job(training_file="BADFILE")},
     400, "training_file", "line 13: messages"),
    ("jobs: wrong-purpose file", "POST", "/v1/fine_tuning/jobs", {"json": _job(training_file="BATCHFILE")}, 400,
     "training_file", "purpose 'batch'"),
    ("jobs: n_epochs wrong type", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(hyperparameters={"n_epochs": "many"})}, 400, "hyperparameters.n_epochs", "n_epochs"),
    ("jobs: negative learning rate", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(hyperparameters={"learning_rate": -0.1})}, 400, "hyperparameters.learning_rate", "learning_rate"),
    ("jobs: lora_r out of range", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(method={"type": "supervised", "supervised": {"hyperparameters": {"lora_r": 0}}})}, 400,
     "method.supervised.hyperparameters.lora_r", "lora_r"),
    ("jobs: unknown method", "POST", "/v1/fine_tuning/jobs", {"json": _job(method={"type": "rlhf"})}, 400,
     "method.type", "method.type"),
    ("jobs: reinforcement without its grader", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(method={"type": "reinforcement"})}, 400, "method", "method.reinforcement"),
    ("jobs: dpo beta out of range", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 5}}})}, 400,
     "method.dpo.hyperparameters.beta", "beta"),
    ("jobs: unknown fine-tuned model", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(model="ft:ftserve-tiny:ftserve::nothere", method={"type": "dpo"})}, 400, "model",
     "not available for fine-tuning"),
    ("jobs: both hyperparameter places", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(hyperparameters={}, method={"type": "supervised"})}, 400, "hyperparameters", "not both"),
    ("jobs: bad suffix", "POST", "/v1/fine_tuning/jobs", {"json": _job(suffix="has spaces/and slashes")}, 400,
     "suffix", "suffix"),
    ("jobs: too much metadata", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(metadata={f"k{i}": "v" for i in range(17)})}, 400, "metadata", "metadata"),
    ("jobs: wrong content type", "POST", "/v1/fine_tuning/jobs",
     {"content": b"model=x", "headers": {"content-type": "text/plain"}}, 400, None, ""),
    ("jobs: unknown id", "GET", "/v1/fine_tuning/jobs/ftjob-nope", {}, 404, "fine_tuning_job_id", "No such"),
    ("jobs: cancel unknown", "POST", "/v1/fine_tuning/jobs/ftjob-nope/cancel", {}, 404, "fine_tuning_job_id",
     "No such"),
    ("jobs: events of unknown", "GET", "/v1/fine_tuning/jobs/ftjob-nope/events", {}, 404, "fine_tuning_job_id",
     "No such"),
    ("jobs: checkpoints of unknown", "GET", "/v1/fine_tuning/jobs/ftjob-nope/checkpoints", {}, 404,
     "fine_tuning_job_id", "No such"),
    ("jobs: limit too large", "GET", "/v1/fine_tuning/jobs?limit=1000", {}, 400, "limit", "limit"),
    ("models: unknown", "GET", "/v1/models/ft:nope:x:y:z", {}, 404, "model", "does not exist"),
    ("models: traversal-shaped name", "GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", {}, 404, "model",
     "does not exist"),
    ("models: delete base", "DELETE", "/v1/models/ftserve-tiny", {}, 403, "model", "cannot be deleted"),
    ("models: delete traversal", "DELETE", "/v1/models/../../x", {}, 404, None, ""),
    ("chat: template arguments the server sets", "POST", "/v1/chat/completions", {"json": {
        "model": "ftserve-tiny", "messages": [{"role": "user", "content": "hi"}],
        "chat_template_kwargs": {"add_generation_prompt": False}}}, 400, "chat_template_kwargs", "set by the server"),
    ("chat: reasoning on a user message", "POST", "/v1/chat/completions", {"json": {
        "model": "ftserve-tiny", "messages": [{"role": "user", "content": "hi", "reasoning_content": "x"}]}}, 400,
     None, "only allowed on assistant messages"),
    ("batches: window over a day", "POST", "/v1/batches", {"json": {
        "input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "25h"}}, 400,
     "completion_window", "at most 24h"),
    ("webhooks: loopback url", "POST", "/v1/webhook_endpoints", {"json": {
        "name": "x", "url": "http://127.0.0.1:9/x", "event_types": ["batch.completed"]}}, 400, "url", "non-public"),
    ("webhooks: unknown endpoint", "GET", "/v1/webhook_endpoints/whep_nope", {}, 404, "webhook_endpoint_id",
     "No such webhook endpoint"),
    ("unknown route", "GET", "/v1/nothing-here", {}, 404, None, "Unknown request URL"),
    ("method not allowed", "PUT", "/v1/files", {}, 405, None, ""),
]
