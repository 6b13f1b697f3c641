"""All service settings, from `ftserve serve` flags or FTSERVE_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

TINY_MODEL_NAME = "ftserve-tiny"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FTSERVE_", extra="ignore", use_attribute_docstrings=True)

    model: str | None = None
    """Base model directory. Unset: the tiny model, built offline under the data dir on first start."""

    served_model_name: str | None = None
    """The base model's id in the API. Default: `ftserve-tiny` for the tiny model, else `model`."""

    data_dir: Path = Path("data")
    """Database, uploaded files, job runs, adapters and the tiny model live here."""

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

    trainer_threads: int = Field(default=0, ge=0)
    """CPU threads per trainer process (0: torch's default)."""

    cancel_grace_seconds: float = Field(default=1.0, ge=0)
    """After SIGTERM, how long a cancelled trainer gets before SIGKILL."""

    log_level: str = "info"
    """Log level of the service."""

    @property
    def base_model_name(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        return TINY_MODEL_NAME if self.model is None else self.model

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ftserve.db"
