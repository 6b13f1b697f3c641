from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.metrics import CONTENT_TYPE_LATEST

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request) -> JSONResponse:
    """The process is alive, and its engine (if any) has not died."""
    dead = request.app.state.engine.dead
    return JSONResponse({"status": "engine failed" if dead else "ok"}, 503 if dead else 200)


@router.get("/ready")
def ready(request: Request) -> JSONResponse:
    """Ready to serve: the database and the object store answer, and the engine (unless disabled) is up."""
    state = request.app.state
    db_ok = state.db.ping()
    storage_ok = state.objects.ping()
    engine_ok = state.settings.engine == "none" or state.engine.ready
    ok = db_ok and storage_ok and engine_ok
    body = {"status": "ready" if ok else "not ready", "database": db_ok, "object_store": storage_ok,
            "engine": engine_ok}
    return JSONResponse(body, 200 if ok else 503)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    state = request.app.state
    body = state.metrics.render(state.engine, state.admission.pending, state.db.count_jobs_by_status(),
                                dict(state.runner.training_tokens_per_s))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
