"""Probes and Prometheus metrics. They report on every feature, so the feature list names this one last."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.components import Components, Feature
from service.fine_tuning.runner import JobRunner
from service.fine_tuning.store import JobStore
from service.inference.engine import AdapterResolver, Engine
from service.inference.generation import Admission
from service.metrics import CONTENT_TYPE_LATEST

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request) -> JSONResponse:
    """The process is alive, and its engine (if any) has not died."""
    dead = request.app.state.components.get(Engine).dead
    return JSONResponse({"status": "engine failed" if dead else "ok"}, 503 if dead else 200)


@router.get("/ready")
def ready(request: Request) -> JSONResponse:
    """Ready to serve: the database and the object store answer, and the engine (unless disabled) is up."""
    c: Components = request.app.state.components
    db_ok = c.db.ping()
    storage_ok = c.objects.ping()
    engine_ok = c.settings.engine == "none" or c.get(Engine).ready
    ok = db_ok and storage_ok and engine_ok
    body = {"status": "ready" if ok else "not ready", "database": db_ok, "object_store": storage_ok,
            "engine": engine_ok}
    return JSONResponse(body, 200 if ok else 503)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    c: Components = request.app.state.components
    body = c.metrics.render(c.get(Engine), c.get(Admission).pending, c.get(JobStore).count_by_status(),
                            dict(c.get(JobRunner).training_tokens_per_s), len(c.get(AdapterResolver).warm()))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/adapters/warm")
def warm_adapters(request: Request) -> JSONResponse:
    """The adapters this replica's engine has loaded, most recently used last: a router sends a model's traffic
    where it is warm. Operator-only like /metrics (names, no content)."""
    c: Components = request.app.state.components
    return JSONResponse({"replica": c.settings.owner, "adapters": c.get(AdapterResolver).warm()})


feature = Feature("health", routers=[router])
