"""Reinforcement jobs' rollouts: the trainer's policy sampled on the serving engine and graded here.

Each request (trainer/rollouts.py) carries the job's adapter as it stands; it is written under the data
dir's `rollouts/<job>/step-N` (a path this server chooses) and loaded into an engine LoRA slot as that
step's policy, replacing the previous step's. Prompts run at batch priority through the offline lane, so
interactive requests go first, as they do before batch lines. Answers are graded with the job's own
grader (the one it was created with, not one the trainer sends).

Only the job's trainer may ask: it holds a token the runner made at launch (in its environment), checked
here in constant time; the token is revoked, and rollouts still running for the job are cancelled (their
engine requests aborted), when the trainer ends for any reason: done, failed, cancelled or paused.

`ftserve train` with `stage: grpo` asks a running server instead (`POST /v1/fine_tuning/alpha/rollouts`,
with an API key): the same sampling and grading, its grader in the request, its adapter checked as an
imported one is and loaded for that request only.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hmac
import json
import secrets
import shutil
import time
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from service.errors import APIError, Kind
from service.fine_tuning.protocol import Method
from service.fine_tuning.store import JobStore
from service.graders.service import GraderService
from service.inference.engine import BATCH_PRIORITY, AdapterResolver, Engine
from service.inference.offline import OfflineLane
from service.models.imports import Base, check_adapter
from trainer.contract import RolloutAdapter, RolloutRequest, RolloutResponse, RolloutSample

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class RolloutService:
    def __init__(self, engine: Engine, resolver: AdapterResolver, lane: OfflineLane, graders: GraderService,
                 store: JobStore, data_dir: Path, base: Base):
        """`base`: the served base model, which an adapter sent by `ftserve train` must fit."""
        self.engine, self.resolver, self.lane, self.graders, self.store = engine, resolver, lane, graders, store
        self.base = base
        self.root = data_dir / "rollouts"
        self._tokens: dict[str, str] = {}
        self._policies: dict[str, tuple[int, object, Path]] = {}  # job -> (step, LoRARequest, its folder)
        self._running: collections.defaultdict[str, set[asyncio.Task]] = collections.defaultdict(set)
        self._locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)

    # ------------------------------------------------------------------ who may ask
    def issue(self, job_id: str) -> str:
        """A new token for the job's trainer (any earlier one stops working)."""
        self._tokens[job_id] = token = secrets.token_urlsafe(32)
        return token

    def authorize(self, job_id: str, authorization: str | None) -> None:
        expected = self._tokens.get(job_id)
        given = (authorization or "").removeprefix("Bearer ").strip()
        if expected is None or not hmac.compare_digest(expected.encode(), given.encode()):
            raise APIError(Kind.AUTHENTICATION, "This endpoint answers a running reinforcement job's trainer only.",
                           code="invalid_rollout_token")

    async def revoke(self, job_id: str) -> None:
        """The trainer ended: its token, its rollouts still running and its policy adapter go."""
        self._tokens.pop(job_id, None)
        for task in list(self._running.pop(job_id, ())):
            task.cancel()
        async with self._locks[job_id]:
            await self._unload(job_id)
        shutil.rmtree(self.root / job_id, ignore_errors=True)
        self._locks.pop(job_id, None)

    # ------------------------------------------------------------------ rollouts
    async def rollouts(self, job_id: str, req: RolloutRequest) -> RolloutResponse:
        self.engine.require_ready()
        task = asyncio.ensure_future(self._rollouts(job_id, req))
        self._running[job_id].add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if task.cancelled() and job_id not in self._tokens:
                raise APIError(Kind.CONFLICT, "The job's trainer has ended; its rollouts were stopped.",
                               code="job_not_running") from None
            raise
        finally:
            self._running.get(job_id, set()).discard(task)

    async def _rollouts(self, job_id: str, req: RolloutRequest) -> RolloutResponse:
        job, row = self.store.get(job_id), self.store.row(job_id)
        method = Method.model_validate(job.method).reinforcement
        lora = await self._policy(job_id, req.step, req.adapter)
        return await self._sample(job_id, req, lora, method.grader, method.response_format, row.project_id)

    async def outside(self, req: RolloutRequest, project: str) -> RolloutResponse:
        """Rollouts for `ftserve train` (stage grpo) outside any job, with the caller's key: the adapter is
        checked as an import is (it is the caller's upload) and loaded for this request only; the request's
        grader is checked as the grader endpoints check one."""
        from service.graders.protocol import Grader

        self.engine.require_ready()
        if req.grader is None:
            raise APIError(Kind.INVALID_REQUEST, "A grader is required.", param="grader")
        try:
            grader = TypeAdapter(Grader).validate_python(req.grader)
        except ValidationError as e:
            err = e.errors()[0]
            raise APIError(Kind.INVALID_REQUEST, f"grader: {err['msg']}", param="grader." + ".".join(
                str(p) for p in err["loc"])) from None
        self.graders.check(grader, "grader", project=project)
        run = f"train-{secrets.token_hex(8)}"
        folder = self.root / run
        lora = await self._load(folder, req.adapter, run, self.base)
        try:
            return await self._sample(run, req, lora, grader, None, project)
        finally:
            await self.engine.llm.remove_lora(lora.lora_int_id)
            shutil.rmtree(folder, ignore_errors=True)

    async def _sample(self, run: str, req: RolloutRequest, lora, grader, response_format: dict | None,
                      project: str) -> RolloutResponse:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        started = time.perf_counter()
        structured = None
        fmt = response_format or {}
        if fmt.get("type") == "json_schema":
            structured = StructuredOutputsParams(json=(fmt.get("json_schema") or {}).get("schema") or {})
        elif fmt.get("type") == "json_object":
            structured = StructuredOutputsParams(json_object=True)

        async def one(index: int, messages: list[dict]) -> tuple[int, list[int], list]:
            tokenizer = self.engine.tokenizer  # rendered as chat completions renders it
            try:
                text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception as e:  # noqa: BLE001 - a template raises whatever its author chose
                raise APIError(Kind.INVALID_REQUEST, f"prompt {index}: the chat template cannot render its "
                               f"messages: {e}", param="prompts") from None
            ids = tokenizer.encode(text, add_special_tokens=False)
            room = self.engine.max_model_len - len(ids)
            if room < 1:
                raise APIError(Kind.INVALID_REQUEST, f"prompt {index} is longer than the model's context",
                               param="prompts")
            params = SamplingParams(n=req.n, temperature=req.temperature, max_tokens=min(req.max_tokens, room),
                                    seed=None if req.seed is None else (req.seed + index * 1_000_003) % 2**31,
                                    output_kind=RequestOutputKind.FINAL_ONLY, structured_outputs=structured)
            weight = await self.lane.enter(req.n)
            final = None
            try:
                async for output in self.engine.generate(ids, params, f"rollout-{run}-{req.step}-{index}",
                                                         lora, BATCH_PRIORITY):
                    final = output
            finally:
                await self.lane.leave(weight)
            return index, ids, final.outputs

        done = await asyncio.gather(*(one(i, p.messages) for i, p in enumerate(req.prompts)))
        generated = time.perf_counter()
        answers = [(i, ids, c) for i, ids, outputs in done for c in outputs]
        scored = await self.graders.score(grader, [(c.text, req.prompts[i].item) for i, _, c in answers],
                                          project, offline=True)
        samples = [RolloutSample(prompt_index=i, prompt_token_ids=ids, token_ids=list(c.token_ids), text=c.text,
                                 finish_reason=c.finish_reason, reward=s.reward, sub_rewards=s.sub_rewards,
                                 errors=[k for k, v in s.errors.model_dump().items() if v is True])
                   for (i, ids, c), s in zip(answers, scored)]
        return RolloutResponse(samples=samples, generate_s=round(generated - started, 4),
                               grade_s=round(time.perf_counter() - generated, 4))

    async def _policy(self, job_id: str, step: int, adapter: RolloutAdapter):
        """The step's adapter in an engine LoRA slot (loaded once per step), the previous step's removed."""
        async with self._locks[job_id]:
            current = self._policies.get(job_id)
            if current is not None and current[0] == step:
                return current[1]
            await self._unload(job_id)
            folder = self.root / job_id / f"step-{step}"
            lora = await self._load(folder, adapter, f"{job_id}:rollout:{step}")
            self._policies[job_id] = (step, lora, folder)
            return lora

    async def _load(self, folder: Path, adapter: RolloutAdapter, name: str, base: Base | None = None):
        """The adapter written to `folder` (checked against `base` when given: an adapter from outside a job)
        and loaded into an engine LoRA slot; the folder is removed again if it cannot be loaded."""
        from vllm.lora.request import LoRARequest

        try:
            weights = base64.b64decode(adapter.weights_b64, validate=True)
        except ValueError:
            raise APIError(Kind.INVALID_REQUEST, "adapter.weights_b64 is not base64", param="adapter") from None
        try:
            await asyncio.to_thread(_write, folder, adapter.config, weights)
            if base is not None:
                await asyncio.to_thread(check_adapter, folder, base)
            lora = LoRARequest(lora_name=name, lora_int_id=self.resolver.new_id(), lora_path=str(folder))
            try:
                await self.engine.llm.add_lora(lora)
            except Exception as e:  # noqa: BLE001 - vLLM raises various types for unloadable adapters
                raise APIError(Kind.INVALID_REQUEST, f"the engine could not load the policy adapter: {e}",
                               param="adapter") from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return lora

    async def _unload(self, job_id: str) -> None:
        current = self._policies.pop(job_id, None)
        if current is not None:
            _, lora, folder = current
            if self.engine.llm is not None:
                await self.engine.llm.remove_lora(lora.lora_int_id)
            shutil.rmtree(folder, ignore_errors=True)


def _write(folder: Path, config: dict, weights: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ADAPTER_FILES[0]).write_text(json.dumps(config))
    (folder / ADAPTER_FILES[1]).write_bytes(weights)
