"""The `model` label's bound (fast): however many adapters are served, each metric has at most
metrics_max_models + 2 model series (the base model and `other`), the most used adapters keep their own,
and usage stays exact per model."""

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
    models = _series(metrics)
    assert set(models["ftserve_model_requests"]) == {"ftserve-tiny", "other", *names[:20]}
    assert models["ftserve_model_requests"]["other"] == 2 * 980 and models["ftserve_model_requests"][names[0]] == 2
    assert models["ftserve_generation_tokens"]["other"] == 2 * 2 * 980
    assert all(len(series) <= 22 for series in models.values()), {k: len(v) for k, v in models.items()}
    # an adapter that overtakes the least used labelled one takes its place
    hot = names[500]
    for _ in range(3):
        metrics.model_request(hot)
    requests = _series(metrics)["ftserve_model_requests"]
    assert requests[hot] == 3 and len(requests) == 22  # its third request made it one of the most used
    assert len(set(names[:20]) - set(requests)) == 1  # one of the least used left
    assert requests["other"] == 2 * 980  # the overtaken one's past stays in its removed series
    assert metrics.usage(names[999]).requests == 2 and metrics.usage(names[999]).prompt_tokens == 10
    assert metrics.usage("ft:never-served").requests == 0


def _series(metrics: Metrics) -> dict[str, dict[str, float]]:
    """metric family -> model label -> value (counters' totals, histograms' counts)."""
    from prometheus_client import generate_latest

    models: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            if "model" in sample.labels and not sample.name.endswith(("_created", "_bucket", "_sum")):
                models.setdefault(family.name, {})[sample.labels["model"]] = sample.value
    return models
