"""The engine's vLLM arguments on a CPU machine: which executor runs the model (no engine started here;
every engine-backed test runs on what `auto` picks for this machine)."""

import os
from pathlib import Path

import pytest

from service.inference import engine
from service.settings import Settings

MODEL = Path("/models/any")


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setattr(engine, "on_gpu", lambda: False)
    # engine_args sets variables for the engine's processes: give it a copy of the environment, restored after
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("VLLM_")})


def cores(monkeypatch, n: int) -> None:
    monkeypatch.setattr(engine.os, "sched_getaffinity", lambda pid: set(range(n)))


@pytest.mark.parametrize(("n", "expected"), [(2, "uni"), (8, "uni"), (9, "mp"), (64, "mp")])
def test_auto_runs_the_model_in_the_engine_core_on_small_machines(monkeypatch, n, expected):
    cores(monkeypatch, n)
    assert engine.cpu_executor(Settings()) == expected


def test_uni_asks_vllm_for_its_uniprocess_executor_and_lets_vllm_cpu_keep_it(monkeypatch):
    cores(monkeypatch, 2)
    args = engine.engine_args(Settings(), MODEL)
    assert args["distributed_executor_backend"] == "uni"
    # vllm-cpu replaces "uni" with "mp" unless multiprocessing of the engine is off in its process
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1"


@pytest.mark.parametrize(("setting", "n"), [("mp", 2), ("auto", 16)])
def test_mp_leaves_vllm_its_own_cpu_executor(monkeypatch, setting, n):
    cores(monkeypatch, n)
    args = engine.engine_args(Settings(cpu_executor=setting), MODEL)
    assert "distributed_executor_backend" not in args
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ


def test_uni_is_kept_by_vllm_cpu(monkeypatch):
    """What vllm-cpu does with the arguments: the platform's own check keeps "uni" (and turns it back
    into "mp" without the environment variable), so the setting is not silently dropped."""
    from vllm.config import ParallelConfig, VllmConfig
    from vllm.platforms.cpu import CpuPlatform

    cores(monkeypatch, 2)
    engine.engine_args(Settings(), MODEL)
    for multiprocessing, kept in (("0", "uni"), ("1", "mp")):
        monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", multiprocessing)
        config = VllmConfig(parallel_config=ParallelConfig(distributed_executor_backend="uni"))
        CpuPlatform.check_and_update_config(config)
        assert config.parallel_config.distributed_executor_backend == kept
