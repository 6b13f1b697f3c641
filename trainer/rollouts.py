"""The trainer's side of rollouts: ask the server for graded answers from the adapter as it stands.

The adapter goes with each request (its config and safetensors weights: ~0.2 MB for the tiny model at
rank 8, tens of MB for a 0.5 B model), so the trainer needs no disk in common with the server (Ray
workers have none); the server loads it into an engine LoRA slot as the step's policy. The request
carries the job's rollout token (FTSERVE_ROLLOUT_TOKEN), which the job runner gave the trainer with the
address of its own rollout endpoint (FTSERVE_ROLLOUT_URL): the server that launched it, whichever replica
validated the job.
"""

from __future__ import annotations

import base64
import json
import os
import random
import tempfile
import time
from pathlib import Path

import httpx

from trainer.contract import (
    ROLLOUT_TOKEN_ENV, ROLLOUT_URL_ENV, RolloutAdapter, RolloutPrompt, RolloutRequest, RolloutResponse,
)

RETRIES = 5  # a server busy starting its engine answers 503 for a while


class RolloutError(OSError):
    pass


class RolloutClient:
    def __init__(self, url: str, grader: dict | None = None):
        """`url`: a job's rollout endpoint (the runner sets it, with its token), or, for `ftserve train`, a
        running server's API (`http://127.0.0.1:8000/v1`, its key in FTSERVE_API_KEY), asked with `grader`."""
        url = os.environ.get(ROLLOUT_URL_ENV) or url  # the server that launched this run
        self.grader = None
        if "/internal/rollouts/" in url:
            token = os.environ.get(ROLLOUT_TOKEN_ENV, "")
            self.url = url
        else:
            token = os.environ.get("FTSERVE_API_KEY") or "unused"
            self.url, self.grader = url.rstrip("/") + "/fine_tuning/alpha/rollouts", grader
        self.http = httpx.Client(timeout=httpx.Timeout(900, connect=10),
                                 headers={"Authorization": f"Bearer {token}"})

    def sample(self, model, step: int, split: str, prompts: list, n: int, cfg) -> RolloutResponse:
        """`n` graded answers to each prompt from the model's adapter, sampled at cfg's temperature."""
        seed = random.Random(f"{cfg.seed}:{step}:{split}").getrandbits(31)  # its own stream per step and split
        body = RolloutRequest(step=step, split=split, adapter=_adapter(model), n=n, temperature=cfg.temperature,
                              max_tokens=cfg.max_new_tokens, seed=seed, grader=self.grader,
                              prompts=[RolloutPrompt(messages=p.messages, item=p.item) for p in prompts])
        payload = body.model_dump_json()
        for attempt in range(RETRIES):
            try:
                r = self.http.post(self.url, content=payload, headers={"Content-Type": "application/json"})
            except httpx.TransportError as e:
                if attempt == RETRIES - 1:
                    raise RolloutError(f"the server's rollout endpoint cannot be reached: {e}") from None
                time.sleep(2 ** attempt)
                continue
            if r.status_code == 503 and attempt < RETRIES - 1:
                time.sleep(2 ** attempt)
                continue
            if r.status_code != 200:
                raise RolloutError(f"rollouts failed with HTTP {r.status_code}: {r.text[:500]}")
            return RolloutResponse.model_validate_json(r.content)
        raise RolloutError("rollouts failed: the server stayed unavailable")

    def close(self) -> None:
        self.http.close()


def _adapter(model) -> RolloutAdapter:
    """The adapter as `save_pretrained` writes it (what vLLM loads), read back as config and weights."""
    from trainer.recipe import _save_adapter

    with tempfile.TemporaryDirectory() as tmp:
        _save_adapter(model, Path(tmp))
        config = json.loads((Path(tmp) / "adapter_config.json").read_text())
        weights = (Path(tmp) / "adapter_model.safetensors").read_bytes()
    return RolloutAdapter(config=config, weights_b64=base64.b64encode(weights).decode())
