"""Where a run's metrics go besides `events.jsonl`, as LLaMA-Factory users expect them: TensorBoard event
files under `output_dir/runs` (`report_to: tensorboard`), and with `plot_loss` the loss curves as
`output_dir/training_loss.png` (and `training_eval_loss.png` when there is validation)."""

from __future__ import annotations

from pathlib import Path


class Reporter:
    def __init__(self, out_dir: Path, report_to: str, plot_loss: bool):
        self.out_dir, self.plot_loss = out_dir, plot_loss
        self.points: list[dict] = []
        self.writer = None
        if report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(out_dir / "runs"))

    def metrics(self, values: dict) -> None:
        """One logged step's metrics (`step` among them)."""
        self.points.append(values)
        if self.writer is not None:
            for key, value in values.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(_tag(key), value, values["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.plot_loss:
            self._plot("train_loss", "training_loss.png", "training loss")
            self._plot("valid_loss", "training_eval_loss.png", "validation loss")

    def _plot(self, key: str, name: str, title: str) -> None:
        points = [(p["step"], p[key]) for p in self.points if key in p]
        if not points:
            return
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        figure, axes = plt.subplots(figsize=(6, 4))
        axes.plot([s for s, _ in points], [v for _, v in points], marker="o" if len(points) < 30 else None)
        axes.set(xlabel="step", ylabel="loss", title=title)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(self.out_dir / name, dpi=100)
        plt.close(figure)


def _tag(key: str) -> str:
    """`train_loss` -> `train/loss`, `full_valid_loss` -> `full_valid/loss`; others (`learning_rate`) as they are."""
    for split in ("full_valid", "train", "valid"):
        if key.startswith(split + "_"):
            return f"{split}/{key[len(split) + 1:]}"
    return key
