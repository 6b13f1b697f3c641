"""`python -m trainer SPEC`: run the recipe from a JSON or YAML spec; events as JSON lines on stdout.

This is the process a fine-tuning job spawns. Exit status 0 on success, 1 on a failure, whose
last event is an `Error`; 2 when the spec itself is invalid; 3 when SIGTERM stopped it after writing a
checkpoint to resume from. The events are trainer/contract.py's.
"""

import json
import signal
import sys
import threading

from trainer.config import ConfigError, TrainConfig
from trainer.contract import Error
from trainer.data import DataError


def _emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m trainer SPEC.json|SPEC.yaml", file=sys.stderr)
        return 2
    try:
        cfg = TrainConfig.from_file(argv[0])
    except ConfigError as e:
        _emit(Error(code="invalid_config", param=e.param, message=str(e)).as_dict())
        return 2
    return run(cfg, _emit)


def run(cfg: TrainConfig, emit) -> int:
    """Train with events to `emit`, SIGTERM checkpointing and stopping; the process's exit status."""
    from trainer.recipe import request_stop, train  # heavy imports only once the spec is valid

    if threading.current_thread() is threading.main_thread():  # not in a Ray Train worker's thread
        signal.signal(signal.SIGTERM, request_stop)
    try:
        result = train(cfg, emit)
    except DataError as e:
        emit(Error(code="invalid_training_file", message=str(e)).as_dict())
        return 1
    except (ValueError, OSError) as e:
        emit(Error(message=f"{type(e).__name__}: {e}").as_dict())
        return 1
    return 3 if result.adapter_path is None else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
