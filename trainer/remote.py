"""`python -m trainer.remote --storage URL --job ID ...`: a job's trainer on a machine that shares no disk
with the API (a Ray worker). What `python -m trainer SPEC` does, with its inputs and outputs in the
object store:

- in: the job's spec (`jobs/{id}/spec.json`), its training and validation files (`files/{id}`), the
  adapter it trains on from if any (`jobs/{id}/parent/`), and the latest complete checkpoint under
  `jobs/{id}/checkpoints/` (to resume from);
- out: each checkpoint uploaded whole under `jobs/{id}/checkpoints/step-N/` (its optimizer state
  last) before its event is printed, the final adapter under `jobs/{id}/adapter/`; the events on
  stdout as JSON lines, each checkpoint and the final one naming its object key (`key`,
  `adapter_key`) for the API to publish from.

The base model is read from `--model`, a path on this machine (or a hub id). SIGTERM checkpoints
after the current step and exits, as the local trainer does. Exit codes are the local trainer's.

`--workers N` (N > 1) trains data-parallel under Ray Train's TorchTrainer: N processes (gloo on
CPU, NCCL on GPU), each fetching its own inputs, each taking its share of every batch (see
trainer/recipe.py); rank 0 alone reports and stores. A data-parallel run does not checkpoint on
SIGTERM: a paused one resumes from its last periodic checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from adapters.objects import open_objects
from trainer.__main__ import _emit, run
from trainer.config import ConfigError, TrainConfig
from trainer.contract import STATE_FILE, Error, JobKeys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.remote")
    parser.add_argument("--storage", required=True, help="s3://bucket/prefix, or the API's data dir")
    parser.add_argument("--job", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--training-file", required=True)
    parser.add_argument("--validation-file")
    parser.add_argument("--workers", type=int, default=1, help="data-parallel workers (Ray Train)")
    parser.add_argument("--workdir", type=Path, help="scratch space (default: a temporary directory)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"{args.job}-"))
    if args.workers == 1:
        return train_job(args, workdir)
    return train_data_parallel(args, workdir)


def train_job(args: argparse.Namespace, workdir: Path) -> int:
    """Fetch the job's inputs into `workdir`, train, store checkpoints and the adapter as they come."""
    storage = args.storage
    objects = open_objects(storage if storage.startswith("s3://") else None, Path(storage), workdir / "cache")
    keys = JobKeys(args.job)
    run_dir = workdir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- inputs
    spec = json.loads(objects.get_bytes(keys.spec))
    spec.update(model_name_or_path=args.model, output_dir=str(run_dir),
                dataset=str(objects.fetch(args.training_file)),
                eval_dataset=str(objects.fetch(args.validation_file)) if args.validation_file else None)
    if spec.get("adapter_name_or_path"):  # training on from a fine-tuned model: the job's copy of it
        spec["adapter_name_or_path"] = str(objects.fetch_tree(keys.parent, workdir / "parent"))
    if os.environ.get("FTSERVE_TRAINER_THREADS"):
        spec["num_threads"] = int(os.environ["FTSERVE_TRAINER_THREADS"])
    objects.fetch_latest_checkpoint(keys.checkpoints, run_dir / "checkpoints", STATE_FILE)
    try:
        cfg = TrainConfig.from_mapping(spec)
    except ConfigError as e:
        _emit(Error(code="invalid_config", param=e.param, message=str(e)).as_dict())
        return 2

    # ---------------------------------------------------------------- train, storing as it goes
    def emit(event: dict) -> None:
        if event["type"] == "checkpoint":
            key = keys.checkpoint(event["step"])
            objects.put_tree(key, Path(event["path"]), last=STATE_FILE)
            event = {**event, "key": key}
        elif event["type"] == "done":
            key = keys.adapter
            objects.put_tree(key, Path(event["adapter_path"]))
            event = {**event, "adapter_key": key}
        _emit(event)

    return run(cfg, emit)


def train_data_parallel(args: argparse.Namespace, workdir: Path) -> int:
    """`args.workers` processes under Ray Train's TorchTrainer (DDP: gloo on CPU, NCCL on GPU), each
    fetching its own inputs (workers may be on other machines); rank 0 reports and stores."""
    import torch
    from ray.train import RunConfig, ScalingConfig, get_context
    from ray.train.torch import TorchTrainer

    def worker() -> None:
        rank = get_context().get_world_rank()
        if train_job(args, workdir / f"worker-{rank}") in (1, 2):  # ranks > 0 end without an adapter: 3
            raise RuntimeError(f"training failed on worker {rank}")

    trainer = TorchTrainer(worker, scaling_config=ScalingConfig(num_workers=args.workers,
                                                               use_gpu=torch.cuda.is_available()),
                           run_config=RunConfig(name=args.job, storage_path=str(workdir / "ray-train")))
    try:
        trainer.fit()
    except Exception as e:  # noqa: BLE001 - a worker failed: rank 0 has said why where it could
        _emit(Error(message=f"data-parallel training failed: {e}").as_dict())
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
