from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/ready")
def ready(request: Request) -> JSONResponse:
    """Ready to serve: the database answers."""
    db_ok = request.app.state.db.ping()
    return JSONResponse({"status": "ready" if db_ok else "not ready", "database": db_ok}, 200 if db_ok else 503)
