"""Prometheus metrics (`/metrics`), one registry per app.

Label sets stay bounded: routes are templates (`/v1/files/{file_id}`); a `model` label is the base
model, one of the `metrics_max_models` adapters with the most requests on this replica, or `other` (so
1,000 adapters make at most metrics_max_models + 2 series per metric). An adapter that overtakes the
least used labelled one takes its place: the overtaken one's series are removed and its later traffic
counts under `other`; `job` labels exist
only for jobs that are running now (at most `max_concurrent_jobs`). Per-project counters are labelled
by project id (projects are made by an admin), never by key. Exact per-model usage, which no label
bounds, is kept in memory for `/v1/models/{model}` (`usage`).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass
class Usage:
    """One model's traffic on this replica since it started."""
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


OTHER = "other"


class Metrics:
    def __init__(self, max_models: int = 20):
        self.max_models, self._labelled, self._usage = max_models, set(), {}
        self.base_model: str | None = None  # always its own label
        r = self.registry = CollectorRegistry()
        self.http_requests = Counter("ftserve_http_requests", "HTTP requests", ["route", "method", "status"],
                                     registry=r)
        self.http_duration = Histogram("ftserve_http_request_duration_seconds", "HTTP request duration (for "
                                       "streams: until the last byte)", ["route", "method"], buckets=LATENCY,
                                       registry=r)
        self.ttft = Histogram("ftserve_time_to_first_token_seconds", "Time from admission to the first token",
                              buckets=LATENCY, registry=r)
        self.itl = Histogram("ftserve_inter_token_latency_seconds", "Time between two generated tokens",
                             buckets=LATENCY, registry=r)
        self.e2e = Histogram("ftserve_e2e_request_latency_seconds", "Time from admission to the last token",
                             buckets=LATENCY, registry=r)
        self.model_requests = Counter("ftserve_model_requests", "Generation requests by model (a bounded label: "
                                      "see the module's docstring)", ["model"], registry=r)
        self.model_latency = Histogram("ftserve_model_request_latency_seconds", "Time from admission to the last "
                                       "token, by model", ["model"], buckets=LATENCY, registry=r)
        self.adapters_loaded = Gauge("ftserve_adapters_loaded", "Adapters loaded in this replica's engine (its host "
                                     "LoRA cache, at most max_cpu_loras; the device slots are filled from it)",
                                     registry=r)
        self.prompt_tokens = Counter("ftserve_prompt_tokens", "Prompt tokens processed", ["model"], registry=r)
        self.generation_tokens = Counter("ftserve_generation_tokens", "Tokens generated", ["model"], registry=r)
        self.requests_running = Gauge("ftserve_requests_running", "Generation requests the engine holds", registry=r)
        self.offline_running = Gauge("ftserve_offline_requests_running", "Generation requests the engine holds "
                                     "below interactive priority (batch lines, eval samples)", registry=r)
        self.requests_waiting = Gauge("ftserve_requests_waiting", "Admitted generation requests without a first "
                                      "token yet", registry=r)
        self.webhook_deliveries = Counter("ftserve_webhook_deliveries", "Webhook delivery attempts by result "
                                          "(delivered, failed_attempt, given_up)", ["result"], registry=r)
        self.webhooks_pending = Gauge("ftserve_webhooks_pending", "Webhook deliveries not yet delivered nor given up",
                                      registry=r)
        self.adapter_versions_collected = Counter("ftserve_adapter_versions_collected", "Orphaned adapter versions "
                                                  "deleted from the object store", registry=r)
        self.cache_bytes = Gauge("ftserve_cache_bytes", "This server's local copies from the object store, in bytes "
                                 "(files: uploaded files; adapters: adapter versions)", ["cache"], registry=r)
        self.jobs = Gauge("ftserve_fine_tuning_jobs", "Fine-tuning jobs by status", ["status"], registry=r)
        self.training_tps = Gauge("ftserve_training_tokens_per_second", "Training throughput of running jobs",
                                  ["job"], registry=r)
        self.adapter_loads = Counter("ftserve_adapter_loads", "Adapters loaded into the engine", registry=r)
        self.adapter_load_seconds = Histogram("ftserve_adapter_load_seconds", "Time to load an adapter",
                                              buckets=LATENCY, registry=r)
        self.project_requests = Counter("ftserve_project_requests", "Generation requests admitted, by project",
                                        ["project"], registry=r)
        self.project_tokens = Counter("ftserve_project_tokens", "Prompt and generated tokens, by project",
                                      ["project", "kind"], registry=r)
        self.project_training_tokens = Counter("ftserve_project_training_tokens", "Tokens trained on by "
                                               "succeeded fine-tuning jobs, by project", ["project"], registry=r)
        self.adapter_evictions = Counter("ftserve_adapter_evictions", "Adapters evicted from the engine's host "
                                         "cache (LRU over max_cpu_loras)", registry=r)

    # ------------------------------------------------------------------ events
    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_duration.labels(route, method).observe(seconds)

    def label(self, model: str) -> str:
        """The model's `model` label: its name if it is the base model or among the most used adapters."""
        return model if model == self.base_model or model in self._labelled else OTHER

    def usage(self, model: str) -> Usage:
        return self._usage.get(model) or Usage()

    def model_request(self, model: str) -> None:
        self._usage.setdefault(model, Usage()).requests += 1
        self._rank(model)
        self.model_requests.labels(self.label(model)).inc()

    def _rank(self, model: str) -> None:
        """Give `model` a label of its own if a slot is free or it now has more requests than the least used
        labelled adapter, whose series are then removed."""
        if model == self.base_model or model in self._labelled or self.max_models == 0:
            return
        if len(self._labelled) >= self.max_models:
            weakest = min(self._labelled, key=lambda m: (self._usage[m].requests, m))
            if self._usage[model].requests <= self._usage[weakest].requests:
                return
            self._labelled.discard(weakest)
            for metric in (self.model_requests, self.model_latency, self.prompt_tokens, self.generation_tokens):
                try:
                    metric.remove(weakest)
                except KeyError:  # it had no sample in this one yet
                    pass
        self._labelled.add(model)

    def model_done(self, model: str, seconds: float) -> None:
        self.model_latency.labels(self.label(model)).observe(seconds)

    def tokens(self, model: str, project: str, prompt: int, generated: int) -> None:
        self._usage.setdefault(model, Usage())
        self.prompt_tokens.labels(self.label(model)).inc(prompt)
        self.generation_tokens.labels(self.label(model)).inc(generated)
        usage = self._usage[model]
        usage.prompt_tokens += prompt
        usage.completion_tokens += generated
        self.project_tokens.labels(project, "prompt").inc(prompt)
        self.project_tokens.labels(project, "completion").inc(generated)

    def project_request(self, project: str) -> None:
        self.project_requests.labels(project).inc()

    def training_tokens(self, project: str, tokens: int) -> None:
        self.project_training_tokens.labels(project).inc(tokens)

    def adapter_loaded(self, seconds: float) -> None:
        self.adapter_loads.inc()
        self.adapter_load_seconds.observe(seconds)

    def adapter_evicted(self) -> None:
        self.adapter_evictions.inc()

    # ------------------------------------------------------------------ scrape
    def render(self, engine, waiting: int, job_counts: dict[str, int], training_tps: dict[str, float],
               adapters_loaded: int) -> bytes:
        self.requests_running.set(engine.request_counts())
        self.adapters_loaded.set(adapters_loaded)
        self.offline_running.set(engine.offline)
        self.requests_waiting.set(waiting)
        for status in ("validating_files", "queued", "running", "succeeded", "failed", "cancelled"):
            self.jobs.labels(status).set(job_counts.get(status, 0))
        self.training_tps.clear()
        for job_id, tps in training_tps.items():
            self.training_tps.labels(job_id).set(tps)
        return generate_latest(self.registry)
