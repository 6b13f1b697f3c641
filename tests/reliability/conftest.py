"""Reliability suites: bad input, faults, load. They share one engine-backed server.

The figures the suites measure (cases tried, 5xx seen, streams completed, latencies, recovery
time) are collected in `figures`; `bench/reliability.py` runs the suites with
FTSERVE_RELIABILITY_OUT set and writes them to bench/results/reliability.json.
"""

import json
import os
import time
from pathlib import Path

import pytest
from openai import OpenAI

from tests.support.jobs import create_job, wait_for_status
from tests.support.server import Server

FIGURES: dict = {}


@pytest.fixture(scope="session")
def figures() -> dict:
    return FIGURES


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("FTSERVE_RELIABILITY_OUT")
    if out and FIGURES:
        FIGURES["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        FIGURES["all_passed"] = exitstatus == 0
        Path(out).write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="package")
def server(tiny_model, tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("data"), model=tiny_model, max_concurrent_generations=48,
                 max_loras=4, max_cpu_loras=8).start(timeout=240)
    yield srv
    srv.stop()


@pytest.fixture(scope="package")
def client(server) -> OpenAI:
    return server.client()


@pytest.fixture(scope="package")
def adapter(client):
    """One trained adapter (and its checkpoint) that every suite must leave working."""
    job = create_job(client, n_epochs=50, batch_size=4, learning_rate=5e-3, lora_r=16, n_checkpoints=1)
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=600)
    assert done.status == "succeeded", done.error
    return done
