"""The trainer's events as the runner reads them (fast: no training): every event type round-trips, a line
that is not an event is passed over, and a job's object keys are laid out once."""

import pytest

from trainer.contract import (
    Checkpoint, Done, Error, Evaluation, Info, Interrupted, JobKeys, Metrics, parse_event,
)

EVENTS = [
    Info(message="resumed from step-10 at step 10", total_steps=40),
    Metrics(step=3, total_steps=40, train_loss=1.5, learning_rate=1e-4, tokens=300, tokens_per_s=99.5,
            elapsed_s=3.0, valid_loss=1.7, train_reward_accuracy=0.5),
    Evaluation(step=0, metrics={"valid_exact_match": 0.25}, answers=["a", "b"]),
    Checkpoint(step=10, path="/run/checkpoints/step-10", metrics={"train_loss": 1.2}, key="jobs/j/checkpoints/step-10"),
    Done(adapter_path="/run/adapter", steps=40, trained_tokens=4000, elapsed_s=12.5, metrics={"train_loss": 0.1}),
    Interrupted(step=12, message="stopped at step 12 on request"),
    Error(code="invalid_training_file", message="line 3: no messages"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_every_event_round_trips_through_a_line(event):
    parsed = parse_event(event.line())
    assert type(parsed) is type(event) and parsed == event


def test_metrics_keep_the_method_s_own_values():
    parsed = parse_event(EVENTS[1].line())
    assert parsed.values["valid_loss"] == 1.7 and parsed.values["train_reward_accuracy"] == 0.5
    assert "type" not in parsed.values and parsed.values["step"] == 3


@pytest.mark.parametrize("line", [
    "Loading checkpoint shards: 100%", "", "[1, 2]", '{"type": "gossip", "message": "hi"}',
    '{"type": "metrics", "step": 1}', '{"type": "done"}', b'\xff\xfe not utf-8',
])
def test_a_line_that_is_not_an_event_is_passed_over(line):
    assert parse_event(line) is None


def test_an_error_without_a_code_is_a_training_failure():
    assert parse_event('{"type": "error", "message": "boom"}') == Error(code="training_failed", message="boom")


def test_a_job_s_object_keys():
    keys = JobKeys("ftjob-abc")
    assert (keys.prefix, keys.spec, keys.parent, keys.adapter, keys.events) == (
        "jobs/ftjob-abc", "jobs/ftjob-abc/spec.json", "jobs/ftjob-abc/parent", "jobs/ftjob-abc/adapter",
        "jobs/ftjob-abc/events.jsonl")
    assert keys.checkpoint(7) == "jobs/ftjob-abc/checkpoints/step-7"
