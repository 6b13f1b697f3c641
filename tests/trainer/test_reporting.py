"""A run's metrics for LLaMA-Factory users (fast: no training): TensorBoard event files with every numeric
metric by step, and the loss curves as PNGs with plot_loss."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainer.reporting import Reporter

POINTS = [{"step": 1, "train_loss": 2.0, "train_mean_token_accuracy": 0.1},
          {"step": 2, "train_loss": 1.5, "valid_loss": 1.8},
          {"step": 3, "train_loss": 1.0, "valid_loss": 1.2, "learning_rate": 1e-4}]


def test_tensorboard_scalars_and_loss_plots(tmp_path):
    reporter = Reporter(tmp_path, "tensorboard", plot_loss=True)
    for point in POINTS:
        reporter.metrics(point)
    reporter.close()
    for name in ("training_loss.png", "training_eval_loss.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = EventAccumulator(str(tmp_path / "runs"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 2.0), (2, 1.5), (3, 1.0)]
    assert [e.step for e in events.Scalars("valid/loss")] == [2, 3]
    assert "learning_rate" in events.Tags()["scalars"] and "train/mean_token_accuracy" in events.Tags()["scalars"]


def test_nothing_is_written_unless_asked(tmp_path):
    reporter = Reporter(tmp_path, "none", plot_loss=False)
    reporter.metrics(POINTS[0])
    reporter.close()
    assert list(tmp_path.iterdir()) == []
