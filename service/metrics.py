"""Prometheus metrics (`/metrics`), in one registry per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 - re-exported for the route


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests_running = Gauge("ftserve_requests_running", "Generation requests the engine is running",
                                      registry=r)
        self.requests_waiting = Gauge("ftserve_requests_waiting", "Generation requests waiting for the engine",
                                      registry=r)
        self.prompt_tokens = Counter("ftserve_prompt_tokens", "Prompt tokens processed", ["model"], registry=r)
        self.generation_tokens = Counter("ftserve_generation_tokens", "Tokens generated", ["model"], registry=r)
        self.adapter_loads = Counter("ftserve_adapter_loads", "Adapters loaded into the engine", registry=r)
        self.adapter_load_seconds = Histogram("ftserve_adapter_load_seconds", "Time to load an adapter",
                                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                              registry=r)

    def tokens(self, model: str, prompt: int, generated: int) -> None:
        self.prompt_tokens.labels(model).inc(prompt)
        self.generation_tokens.labels(model).inc(generated)

    def adapter_loaded(self, seconds: float) -> None:
        self.adapter_loads.inc()
        self.adapter_load_seconds.observe(seconds)

    def render(self, engine) -> bytes:
        running, waiting = engine.request_counts()
        self.requests_running.set(running)
        self.requests_waiting.set(waiting)
        return generate_latest(self.registry)
