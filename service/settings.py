"""All service settings, from `ftserve serve` flags or FTSERVE_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

TINY_MODEL_NAME = "ftserve-tiny"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FTSERVE_", extra="ignore", use_attribute_docstrings=True)

    model: str | None = None
    """Base model directory. Unset: the tiny model, built offline under the data dir on first start."""

    served_model_name: str | None = None
    """The base model's id in the API (as vLLM's --served-model-name). Default: `ftserve-tiny` for the
    tiny model; the directory's name for a local model; a hub-style id as given."""

    data_dir: Path = Path("data")
    """Database, uploaded files, job runs, adapters and the tiny model live here."""

    database_url: str | None = None
    """A SQLAlchemy URL of the database, e.g. `postgresql+psycopg://user:pass@host/db`. Unset: SQLite in the data dir."""

    storage_url: str | None = None
    """Where uploaded files, job artifacts and adapters are kept: `s3://bucket/prefix` for S3-compatible
    storage (credentials, endpoint and region from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_ENDPOINT_URL, AWS_REGION). Unset: the data dir. With S3, the data dir holds only caches."""

    adapter_cache_gib: float = Field(default=10, gt=0)
    """With S3 storage: disk space for local copies of adapters (least recently used evicted)."""

    file_cache_gib: float = Field(default=10, gt=0)
    """With an object store: the most each server keeps of uploaded files' local copies (least recently used
    dropped first; a dropped file is downloaded again when next read)."""

    host: str = "127.0.0.1"
    """Address to listen on."""

    port: int = Field(default=8000, ge=0, le=65535)
    """Port to listen on."""

    organization: str = "ftserve"
    """Organization name used in fine-tuned model names: ft:{base}:{organization}:{suffix}:{id}."""

    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    """Largest accepted upload to /v1/files; larger bodies get 413 before they are stored."""

    max_concurrent_jobs: int = Field(default=1, ge=1)
    """Fine-tuning jobs that train at the same time; the rest wait in the queue."""

    replica_id: str | None = None
    """This server's name in job leases (servers sharing a database need distinct ones). Default: host:port."""

    job_lease_seconds: float = Field(default=60, ge=3)
    """A running job whose server has not renewed its lease for this long is queued again (by any
    server sharing the database) and resumes from its last checkpoint."""

    training_backend: Literal["local", "ray"] = "local"
    """Where trainers run: `local` subprocesses of this server, or `ray`: one Ray job per fine-tuning job,
    submitted to the cluster at RAY_ADDRESS (http://HEAD:8265), its data and outputs in the object store."""

    ray_model: str | None = None
    """With Ray: the base model's path on the Ray workers. Unset: the same path as on this server."""

    ray_num_cpus: float | None = Field(default=None, ge=0)
    """With Ray: CPUs each training job asks the cluster for."""

    ray_num_gpus: float | None = Field(default=None, ge=0)
    """With Ray: GPUs each training job asks the cluster for."""

    ray_memory_gib: float | None = Field(default=None, gt=0)
    """With Ray: memory each training job asks the cluster for."""

    trainer_threads: int = Field(default=0, ge=0)
    """CPU threads per trainer process (0: torch's default)."""

    engine: Literal["vllm", "none"] = "vllm"
    """`vllm` serves chat and completions; `none` runs only the fine-tuning control plane."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Engine dtype; `auto` is bfloat16 on a GPU and float32 on CPU."""

    max_loras: int = Field(default=4, ge=1)
    """Adapters batched together on the device at once (vLLM LoRA slots)."""

    max_cpu_loras: int = Field(default=16, ge=1)
    """Adapters kept loaded in host memory (LRU beyond that)."""

    max_lora_rank: int = Field(default=64, ge=1)
    """Largest adapter rank the engine accepts; larger adapters answer 400. Every adapter slot is allocated
    at this rank, and on a CPU computed at it too: there, set it to the largest rank you serve (eight rank-8
    adapters mixed run ~2.5x faster at 8 than at 64; Benchmarks, "Many adapters at once")."""

    metrics_max_models: int = Field(default=20, ge=0)
    """Adapters with a `model` label of their own in /metrics: this many with the most requests on the
    replica; the others count under `model="other"` (the base model always has its own)."""

    max_adapter_bytes: int = Field(default=1 << 30, ge=1)
    """Largest adapter an import (`POST /v1/models`) unpacks, in bytes; a larger archive is refused (413)."""

    tool_call_parser: str = "auto"
    """vLLM's tool parser for the model's calls (`hermes`, `llama3_json`, `mistral`, ...); `auto`: read from the
    chat template (Guides > Base models); `none`: requests with tools are refused."""

    reasoning_parser: str = "auto"
    """vLLM's reasoning parser (`qwen3`, `deepseek_r1`, ...): the model's reasoning section is returned as
    `reasoning_content`; `auto`: read from the chat template; `none`: reasoning stays in the answer."""

    adapter_gc_interval_seconds: float = Field(default=600.0, gt=0)
    """With an object store: how often a server looks for orphaned adapter files (one server at a time)."""

    adapter_gc_grace_seconds: float = Field(default=3600.0, ge=0)
    """With an object store: how old an adapter version's files must be before they are collected when no
    manifest lists them (longer than any upload takes)."""

    max_model_len: int | None = Field(default=None, ge=16)
    """Context length; unset: the model's own."""

    max_num_seqs: int | None = Field(default=None, ge=1)
    """Requests the engine runs in one step (vLLM's max_num_seqs); unset: vLLM's default for offline work
    (256 on CPU and most GPUs, 1,024 on the largest), which batches use; interactive requests are bounded
    by max_concurrent_generations."""

    gpu_memory_utilization: float = Field(default=0.6, gt=0, le=1)
    """Share of GPU memory vLLM may take; the default leaves room for a training subprocess."""

    cpu_kv_cache_gib: int = Field(default=1, ge=1)
    """KV cache size on CPU machines (VLLM_CPU_KVCACHE_SPACE)."""

    cpu_executor: Literal["auto", "uni", "mp"] = "auto"
    """How vLLM runs the model on a CPU machine: `uni` in the engine core's own process on every core; `mp`
    in a worker process bound to the cores but one, which vLLM reserves for its scheduler (vLLM's CPU
    default: the scheduler waits on the worker by spinning on that core). `auto`: `uni` on machines of up to
    8 cores, where the reserved core is an eighth or more of the machine (on 2 cores, `uni` starts the
    engine in half the time and generates 1.2-1.4x the tokens a second), `mp` above."""

    api_keys: str | None = None
    """Comma-separated API keys clients must send as `Authorization: Bearer KEY`. Unset (and no key file): open."""

    api_key_file: Path | None = None
    """A file of API keys, one per line (e.g. a mounted Kubernetes Secret); read at start."""

    admin_key: str | None = None
    """The admin key: it manages projects, their service accounts (whose keys it hands out) and checkpoint
    permissions (`/v1/organization/...`). Unset (and no admin key file): no project administration."""

    admin_key_file: Path | None = None
    """A file of admin keys, one a line: a key, or `sha256:` and its hex SHA-256 (e.g. a mounted Kubernetes
    Secret or ConfigMap); read again within a second of a change, so keys rotate without a restart."""

    key_secret: str | None = None
    """The secret under which service account keys are stored (HMAC-SHA256). Servers sharing a database
    need the same one. Unset (and no key secret file): generated once into the data dir."""

    key_secret_file: Path | None = None
    """A file holding the key secret; read at start."""

    webhook_allow_private_urls: bool = False
    """Allow webhook URLs whose host resolves to loopback, link-local or private addresses (refused by default,
    so that a project cannot make the server call into its own network)."""

    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """How long one webhook delivery attempt may take."""

    webhook_retry_base_seconds: float = Field(default=5.0, gt=0)
    """The wait before a failed delivery's second attempt; it doubles with each attempt, up to an hour."""

    webhook_retry_hours: float = Field(default=72.0, gt=0)
    """How long a delivery is retried before it is given up (`failed`)."""

    project_max_training_jobs: int = Field(default=4, ge=1)
    """Fine-tuning jobs one project may have validating, queued or running at once; past it, 429."""

    project_max_generations: int = Field(default=64, ge=1)
    """Generation requests one project may have in flight on this server at once; past it, 429. Below
    max_concurrent_generations, it keeps one project from taking the whole server."""

    max_concurrent_generations: int = Field(default=64, ge=1)
    """Generation requests the engine may hold at once; past it, 429 with Retry-After."""

    rollout_base_url: str | None = None
    """Where this server's reinforcement trainers reach it for their rollouts: with the Ray backend, an
    address of this replica that the Ray workers can reach (e.g. `http://10.0.0.5:8000`). Unset:
    `http://{host}:{port}` (loopback when host is 0.0.0.0), right for local trainers."""

    python_graders: bool = True
    """Run `python` graders (reinforcement fine-tuning, /v1/fine_tuning/alpha/graders) in their sandbox
    (bubblewrap: no network, no files of the server, unprivileged, rlimits). Off: they are refused with 400."""

    python_grader_timeout_s: float = Field(default=30, gt=0, le=600)
    """Wall-clock limit of one python grader call (a batch of samples); each `grade` call has 5 s."""

    python_grader_memory_mib: int = Field(default=1024, ge=64)
    """Address-space limit of a python grader's process."""

    batch_reserve: int = Field(default=8, ge=0)
    """Engine slots (of the requests vLLM runs in one step, its max_num_seqs) that batch lines leave free
    for interactive requests. Batch lines take the rest, at a lower priority than interactive requests."""

    batch_yield_lines: int | None = Field(default=None, ge=0)
    """Batch lines the engine may hold while interactive requests are served (one in flight, or one ended
    within the last second). Fewer lines make each engine step, and so each interactive token, faster
    where the step time grows with the lines (a CPU); on a GPU it hardly does, and yielding only costs
    batch throughput. Unset: 16 on CPU, no limit on a GPU; 0: no limit."""

    max_queued_jobs: int = Field(default=100, ge=1)
    """Fine-tuning jobs that may wait (validating or queued) at once; past it, 429 with Retry-After."""

    shutdown_timeout_seconds: float = Field(default=30, ge=0)
    """On SIGTERM: how long in-flight streams may finish and trainers may checkpoint before being killed."""

    log_level: str = "info"
    """Log level of the service."""

    @property
    def base_model_name(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        if self.model is None:
            return TINY_MODEL_NAME
        path = Path(self.model)
        # a local directory is named by its last part; a hub-style id ("org/name") stays as given
        return path.resolve().name if path.exists() or self.model.startswith((".", "/", "~")) else self.model

    def load_api_keys(self) -> list[str]:
        keys = [k.strip() for k in (self.api_keys or "").split(",") if k.strip()]
        if self.api_key_file is not None:
            keys += [line.strip() for line in self.api_key_file.read_text().splitlines() if line.strip()]
        return keys

    def has_admin_keys(self) -> bool:
        return self.admin_key_file is not None or bool((self.admin_key or "").strip())

    def load_key_secret(self) -> str | None:
        if self.key_secret_file is not None:
            return self.key_secret_file.read_text().strip() or None
        return self.key_secret or None

    @property
    def owner(self) -> str:
        """This server's replica id (see replica_id)."""
        import socket

        return self.replica_id or f"{socket.gethostname()}:{self.port}"

    # The data dir's layout, defined here once.
    @property
    def db_path(self) -> Path:
        """The SQLite database."""
        return self.data_dir / "ftserve.db"

    @property
    def db_reserve_path(self) -> Path:
        """Ballast beside the SQLite database, freed when the disk fills up (see Database)."""
        return self.data_dir / "ftserve.db.reserve"

    @property
    def key_secret_path(self) -> Path:
        """The generated key secret, when none is given."""
        return self.data_dir / "key-secret"

    @property
    def files_dir(self) -> Path:
        """Uploaded and result files, one per file id."""
        return self.data_dir / "files"

    @property
    def jobs_dir(self) -> Path:
        """One run directory per job: the trainer's spec, events, checkpoints and final adapter (with S3
        storage, a working copy: checkpoints are uploaded as they are made)."""
        return self.data_dir / "jobs"

    @property
    def adapters_dir(self) -> Path:
        """The adapter store."""
        return self.data_dir / "adapters"

    @property
    def cache_dir(self) -> Path:
        """With S3 storage: local copies of stored files, job checkpoints and adapters."""
        return self.data_dir / "cache"

    @property
    def tiny_model_dir(self) -> Path:
        """Where the tiny model is built on first start when no --model is given."""
        return self.data_dir / "models" / TINY_MODEL_NAME
