"""The FastAPI application: wiring of settings, stores, services and routes."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from adapters import AdapterStore
from service import errors
from service.chat import ChatService
from service.completions import CompletionService
from service.db import Database
from service.engine import AdapterResolver, Engine
from service.files import FileService
from service.jobs import JobService
from service.metrics import Metrics
from service.models import ModelService
from service.protocol import ErrorResponse
from service.routes import chat, files, health, jobs, models
from service.runner import JobRunner
from service.settings import TINY_MODEL_NAME, Settings

log = logging.getLogger("ftserve")


def base_model_path(settings: Settings) -> Path:
    """The base model directory; the tiny model is built there on first use."""
    if settings.model is not None:
        return Path(settings.model).resolve()
    path = settings.data_dir / "models" / TINY_MODEL_NAME
    if not (path / "config.json").is_file():
        from trainer.tiny_model import build_tiny_model

        log.info("building the tiny model in %s", path)
        build_tiny_model(path)
    return path


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.data_dir = settings.data_dir.resolve()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        model_path = await asyncio.to_thread(base_model_path, settings)
        db = Database(settings.db_path)
        adapters = AdapterStore(settings.data_dir / "adapters")
        file_service = FileService(db, settings.data_dir / "files", settings.max_upload_bytes)
        runner = JobRunner(db, file_service, adapters, settings, model_path)
        runner.jobs = JobService(db, file_service, settings, runner)
        app.state.settings, app.state.db, app.state.adapters = settings, db, adapters
        app.state.files, app.state.jobs, app.state.runner = file_service, runner.jobs, runner
        app.state.models = ModelService(adapters, settings, str(model_path), int(time.time()))
        engine = Engine(settings, model_path)
        metrics = Metrics()
        resolver = AdapterResolver(adapters, engine, settings, metrics)
        app.state.engine, app.state.metrics = engine, metrics
        app.state.chat = ChatService(engine, resolver, metrics)
        app.state.completions = CompletionService(engine, resolver, metrics)
        if settings.engine == "vllm":
            engine.start_background()
        await runner.start()
        log.info("ftserve ready: base model %s (%s), data in %s", settings.base_model_name, model_path,
                 settings.data_dir)
        try:
            yield
        finally:
            await runner.close()
            await engine.close()
            db.close()

    app = FastAPI(title="ftserve", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible LoRA fine-tuning and inference.")
    errors.install(app)
    error = {"model": ErrorResponse, "description": "An error, in OpenAI's envelope"}
    for router in (chat.router, files.router, jobs.router, models.router, health.router):
        app.include_router(router, responses={"4XX": error, "5XX": error})
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)
    return app


def openapi_yaml() -> str:
    """The app's OpenAPI schema as YAML, as committed in openapi.yaml."""
    import yaml

    return yaml.safe_dump(create_app(Settings(data_dir=Path("/nonexistent"))).openapi(), sort_keys=False,
                          allow_unicode=True, width=120)


class UploadLimit:
    """413 for uploads over the limit, before the body is stored: at once when Content-Length
    says so, else as soon as the streamed body crosses it (the app's own reply is replaced)."""

    MULTIPART_SLACK = 64 * 1024

    def __init__(self, app, max_bytes: int):
        self.app, self.limit = app, max_bytes + self.MULTIPART_SLACK

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/v1/files":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._too_large(scope, receive, send)
        received, exceeded, started = 0, False, False

        async def counted_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise errors.APIError(errors.Kind.TOO_LARGE, "too large")
            return message

        async def guarded_send(message):
            nonlocal started
            if exceeded:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope, receive, send):
        body = errors.envelope(errors.Kind.TOO_LARGE, f"Request body exceeds the maximum upload size of "
                               f"{self.limit - self.MULTIPART_SLACK} bytes.", param="file", code="file_too_large")
        await JSONResponse(body, 413)(scope, receive, send)
