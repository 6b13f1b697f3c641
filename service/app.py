"""The FastAPI application: wiring of settings, stores, services and routes."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from adapters import AdapterCache, AdapterStore, ObjectAdapterStore, open_objects
from service import errors, health
from service.batches import router as batches
from service.batches.runner import BatchRunner
from service.batches.service import BatchService
from service.db import Database, sqlite_url
from service.evals import router as evals
from service.evals.runner import EvalRunner
from service.evals.service import EvalService
from service.files import router as files
from service.ui import router as ui
from service.files.service import FileService
from service.fine_tuning import router as jobs
from service.fine_tuning.backends import open_backend
from service.fine_tuning.runner import JobRunner
from service.fine_tuning.service import JobService
from service.fine_tuning.store import JobStore
from service.inference import router as chat
from service.inference.chat import ChatService
from service.inference.completions import CompletionService
from service.inference.engine import AdapterResolver, Engine
from service.inference.generation import Admission
from service.metrics import Metrics
from service.middleware import Auth, CatchAll, HTTPMetrics, RequestId, UploadLimit
from service.models import router as models
from service.models.service import ModelService
from service.projects import router as projects
from service.projects.keys import Keyring, load_secret
from service.projects.service import Access, ProjectService
from service.protocol import ErrorResponse
from service.settings import Settings

log = logging.getLogger("ftserve")


def base_model_path(settings: Settings) -> Path:
    """The base model directory; the tiny model is built there on first use."""
    if settings.model is not None:
        return Path(settings.model).resolve()
    path = settings.tiny_model_dir
    if not (path / "config.json").is_file():
        from trainer.tiny_model import build_tiny_model

        log.info("building the tiny model in %s (a few minutes, once)", path)
        build_tiny_model(path, progress=True)
    return path


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.data_dir = settings.data_dir.resolve()
    keys = settings.load_api_keys()  # read once: the key files are mounted Secrets
    admin_key = settings.load_admin_key()
    if admin_key and settings.database_url and not settings.load_key_secret():
        raise SystemExit("With an admin key and a shared database (--database-url), give every server the same "
                         "key secret (FTSERVE_KEY_SECRET or --key-secret-file): service account keys are "
                         "checked under it, by any server.")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        model_path = await asyncio.to_thread(base_model_path, settings)
        db = await asyncio.to_thread(Database, settings.database_url or sqlite_url(settings.db_path),
                                     None if settings.database_url else settings.db_reserve_path)
        objects = open_objects(settings.storage_url, settings.data_dir, settings.cache_dir)
        if settings.storage_url:
            cache = AdapterCache(settings.cache_dir / "adapters", int(settings.adapter_cache_gib * 2**30))
            adapters = ObjectAdapterStore(objects, cache)
        else:
            adapters = AdapterStore(settings.adapters_dir)
        secret = load_secret(settings.load_key_secret(), settings.key_secret_path)
        app.state.keyring = keyring = await asyncio.to_thread(Keyring, db, secret, keys, admin_key)
        access = Access(db, adapters)
        app.state.projects = ProjectService(db, keyring, adapters)
        file_service = FileService(db, objects, settings.max_upload_bytes)
        store = JobStore(db)
        runner = JobRunner(store, file_service, adapters, objects, settings, model_path, open_backend(settings))
        app.state.settings, app.state.db, app.state.adapters, app.state.objects = settings, db, adapters, objects
        app.state.files, app.state.runner = file_service, runner
        app.state.jobs = JobService(store, file_service, settings, runner, access)
        app.state.models = ModelService(adapters, access, settings, int(time.time()))
        engine = Engine(settings, model_path)
        metrics = app.state.metrics
        resolver = AdapterResolver(adapters, access, engine, settings, metrics)
        app.state.engine = engine
        admission = Admission(settings.max_concurrent_generations, settings.project_max_generations)
        app.state.admission = admission
        app.state.chat = ChatService(engine, resolver, admission, metrics)
        app.state.completions = CompletionService(engine, resolver, admission, metrics)
        batch_runner = BatchRunner(db, file_service, app.state.chat, app.state.completions, settings)
        app.state.batches = BatchService(db, file_service, batch_runner)
        eval_runner = EvalRunner(db, file_service, app.state.batches, settings)
        app.state.evals = eval_runner.service = EvalService(db, file_service, app.state.models, eval_runner)
        runner.evals = app.state.evals
        runner.metrics = metrics
        if settings.engine == "vllm":
            engine.start_background()
        await runner.start()
        if settings.engine == "vllm":  # batches run on the engine; without one they wait
            await batch_runner.start()
        await eval_runner.start()
        if keyring.open:
            log.warning("no API keys configured (FTSERVE_API_KEYS / FTSERVE_API_KEY_FILE / FTSERVE_ADMIN_KEY): the "
                        "API is open to anyone who can reach it, as the default project")
        log.info("ftserve ready: base model %s (%s), data in %s, storage %s", settings.base_model_name, model_path,
                 settings.data_dir, settings.storage_url or "in the data dir")
        try:
            yield
        finally:
            await eval_runner.close()
            await batch_runner.close()
            await runner.close()
            await engine.close()
            db.close()

    app = FastAPI(title="ftserve", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible LoRA fine-tuning and inference.")
    errors.install(app)
    error = {"model": ErrorResponse, "description": "An error, in OpenAI's envelope"}
    for router in (chat.router, files.router, jobs.router, projects.permissions, batches.router, evals.router,
                   models.router, projects.router, health.router):
        app.include_router(router, responses={"4XX": error, "5XX": error})
    app.include_router(ui.router)  # the dashboard: its page, then its files
    app.mount("/ui", ui.static, name="ui")
    metrics = Metrics()
    app.state.metrics = metrics
    # outermost last: every response gets its request id, metrics see every request, auth runs before
    # the upload limit reads a body, and unexpected errors are answered inside all of them
    app.add_middleware(CatchAll)
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(Auth)
    app.add_middleware(HTTPMetrics, metrics=metrics)
    app.add_middleware(RequestId)
    return app


def openapi_yaml() -> str:
    """The app's OpenAPI schema as YAML, as committed in openapi.yaml."""
    import yaml

    return yaml.safe_dump(create_app(Settings(data_dir=Path("/nonexistent"))).openapi(), sort_keys=False,
                          allow_unicode=True, width=120)
