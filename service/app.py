"""The FastAPI application: the core (settings, database, object store, adapter store, metrics) and the
features composed on it, in the order of FEATURES (see service/components.py)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from adapters import AdapterCache, AdapterStore, ObjectAdapterStore, open_objects
from service import errors, health
from service.batches import feature as batches
from service.components import Components, Feature
from service.db import Database, sqlite_url
from service.evals import feature as evals
from service.exports import feature as exports
from service.files import feature as files
from service.fine_tuning import feature as fine_tuning
from service.graders import feature as graders
from service.inference import feature as inference
from service.metrics import Metrics
from service.middleware import Auth, CatchAll, HTTPMetrics, RequestId, UploadLimit
from service.migrations import upgrade
from service.models import feature as models
from service.projects import feature as projects
from service.projects.keys import Keyring
from service.protocol import ErrorResponse
from service.responses import feature as responses
from service.settings import Settings
from service.ui import feature as ui
from service.webhooks import feature as webhooks

log = logging.getLogger("ftserve")

# Build order: a feature may use the services of those before it (and every feature's stores).
FEATURES: list[Feature] = [
    projects.feature,
    webhooks.feature,
    files.feature,
    models.feature,
    exports.feature,
    inference.feature,
    responses.feature,
    batches.feature,
    evals.feature,
    graders.feature,
    fine_tuning.feature,
    ui.feature,
    health.feature,
]


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


def open_database(settings: Settings) -> Database:
    """The configured database (SQLite in the data dir unless --database-url), its schema upgraded."""
    db = Database(settings.database_url or sqlite_url(settings.db_path),
                  None if settings.database_url else settings.db_reserve_path)
    upgrade(db.engine)
    return db


def open_adapters(settings: Settings, objects):
    if settings.storage_url:
        cache = AdapterCache(settings.cache_dir / "adapters", int(settings.adapter_cache_gib * 2**30))
        return ObjectAdapterStore(objects, cache)
    return AdapterStore(settings.adapters_dir)


def create_app(settings: Settings | None = None, features: list[Feature] | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.data_dir = settings.data_dir.resolve()
    features = FEATURES if features is None else features
    if settings.has_admin_keys() and settings.database_url and not settings.load_key_secret():
        raise SystemExit("With an admin key and a shared database (--database-url), give every server the same "
                         "key secret (FTSERVE_KEY_SECRET or --key-secret-file): service account keys are "
                         "checked under it, by any server.")
    metrics = Metrics(settings.metrics_max_models)
    metrics.base_model = settings.base_model_name

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        model_path = await asyncio.to_thread(base_model_path, settings)
        db = await asyncio.to_thread(open_database, settings)
        objects = open_objects(settings.storage_url, settings.data_dir, settings.cache_dir,
                               settings.file_cache_gib * 2**30)
        adapters = open_adapters(settings, objects)
        metrics.cache_bytes.labels(cache="files").set_function(objects.cached_bytes)
        if hasattr(adapters, "cache"):
            metrics.cache_bytes.labels(cache="adapters").set_function(adapters.cache.size)
        c = Components(settings, db, objects, adapters, metrics, model_path)
        for feature in features:  # every store first: services may take another feature's store
            c.add(*feature.stores(db))
        for feature in features:
            if feature.build is not None:
                feature.build(c)
        app.state.components = c
        for start in c.starts:
            if inspect.isawaitable(started := start()):
                await started
        if c.get(Keyring).open:
            log.warning("no API keys configured (FTSERVE_API_KEYS / FTSERVE_API_KEY_FILE / FTSERVE_ADMIN_KEY): the "
                        "API is open to anyone who can reach it, as the default project")
        log.info("ftserve ready: base model %s (%s), data in %s, storage %s", settings.base_model_name, model_path,
                 settings.data_dir, settings.storage_url or "in the data dir")
        try:
            yield
        finally:
            for stop in reversed(c.stops):
                if inspect.isawaitable(stopped := stop()):
                    await stopped
            db.close()

    app = FastAPI(title="ftserve", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible LoRA fine-tuning and inference.")
    errors.install(app)
    error = {"model": ErrorResponse, "description": "An error, in OpenAI's envelope"}
    for feature in features:
        for router in feature.routers:
            app.include_router(router, **({"responses": {"4XX": error, "5XX": error}} if feature.route_responses
                                          else {}))
        for path, mounted, name in feature.mounts:
            app.mount(path, mounted, name=name)
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
