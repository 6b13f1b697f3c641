"""The `model` label's bound (fast): however many adapters are served, each metric has at most
metrics_max_models + 2 model series (the base model and `other`), while usage stays exact per model."""

from prometheus_client.parser import text_string_to_metric_families

from service.metrics import Metrics


def test_a_thousand_adapters_make_a_bounded_label_set_and_exact_usage():
    metrics = Metrics(max_models=20)
    metrics.base_model = "ftserve-tiny"
    names = [f"ft:ftserve-tiny:acme:a{i}" for i in range(1000)]
    for name in ["ftserve-tiny", *names, *names]:
        metrics.model_request(name)
        metrics.tokens(name, "proj_default", 5, 2)
        metrics.model_done(name, 0.1)
    models = {}
    for family in text_string_to_metric_families(_render(metrics)):
        for sample in family.samples:
            if "model" in sample.labels:
                models.setdefault(family.name, {})[sample.labels["model"]] = sample.value
    assert set(models["ftserve_model_requests"]) == {"ftserve-tiny", "other", *names[:20]}
    assert models["ftserve_model_requests"]["other"] == 2 * 980 and models["ftserve_model_requests"][names[0]] == 2
    assert models["ftserve_generation_tokens"]["other"] == 2 * 2 * 980
    assert all(len(series) <= 22 for series in models.values()), {k: len(v) for k, v in models.items()}
    assert metrics.usage(names[999]).requests == 2 and metrics.usage(names[999]).prompt_tokens == 10
    assert metrics.usage("ft:never-served").requests == 0


def _render(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()
