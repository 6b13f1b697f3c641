"""Errors: one exception type, one table from kinds to HTTP status, one envelope builder.

Every error response, ours or the framework's, has OpenAI's shape:
    {"error": {"message": "...", "type": "invalid_request_error", "param": "purpose", "code": null}}
"""

from __future__ import annotations

import logging
from enum import Enum

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.objects import StorageUnavailable

log = logging.getLogger("ftserve")


class Kind(Enum):
    """Error kinds; the value is (HTTP status, OpenAI error type)."""

    INVALID_REQUEST = (400, "invalid_request_error")
    AUTHENTICATION = (401, "invalid_request_error")
    PERMISSION = (403, "permission_error")
    NOT_FOUND = (404, "invalid_request_error")
    METHOD_NOT_ALLOWED = (405, "invalid_request_error")
    CONFLICT = (409, "invalid_request_error")
    TOO_LARGE = (413, "invalid_request_error")
    UNSUPPORTED_MEDIA_TYPE = (415, "invalid_request_error")
    RATE_LIMITED = (429, "rate_limit_error")
    INSUFFICIENT_STORAGE = (507, "server_error")
    UNAVAILABLE = (503, "server_error")
    INTERNAL = (500, "server_error")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def type(self) -> str:
        return self.value[1]


class APIError(Exception):
    def __init__(
        self, kind: Kind, message: str, *, param: str | None = None, code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.kind, self.message, self.param, self.code, self.headers = kind, message, param, code, headers


def model_not_found(model: str) -> APIError:
    return APIError(Kind.NOT_FOUND, f"The model '{model}' does not exist.", param="model", code="model_not_found")


def adapter_unusable(model: str, why: str) -> APIError:
    return APIError(Kind.INVALID_REQUEST, f"The adapter '{model}' cannot be used: {why}", param="model",
                    code="adapter_unusable")


def engine_dead() -> APIError:
    return APIError(Kind.UNAVAILABLE, "The inference engine has failed; see the server log.", code="engine_dead")


def envelope(kind: Kind, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind.type, "param": param, "code": code}}


def error_response(err: APIError) -> JSONResponse:
    return JSONResponse(envelope(err.kind, err.message, err.param, err.code), err.kind.status, headers=err.headers)


_HTTP_KINDS = {k.status: k for k in Kind if k.type != "server_error" or k.status == 503}


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return error_response(exc)


_LOCATIONS = ("body", "query", "path", "header", "form")


def _param(loc: tuple) -> str | None:
    """`('body', 'hyperparameters', 'n_epochs', 'int')` -> `hyperparameters.n_epochs`."""
    from trainer.data.errors import field_path

    return field_path(loc, skip=_LOCATIONS) or None


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(invalid_request(exc.errors()))


def invalid_request(errs: list[dict]) -> APIError:
    """A request body's validation errors (pydantic's) as the 400 OpenAI answers."""
    # In a union ("auto" or a number) the literal branch's complaint is the less useful one.
    err = next((e for e in errs if not any("literal[" in str(p) for p in e.get("loc", ()))), errs[0])
    param = _param(err.get("loc", ()))
    if err.get("type") == "json_invalid":
        message, param = "The request body is not valid JSON.", None
    elif err.get("type") == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    elif err.get("type") == "missing":
        message = f"Missing required parameter: '{param}'."
    else:
        message = f"Invalid value for '{param}': {err.get('msg')}." if param else str(err.get("msg"))
    return APIError(Kind.INVALID_REQUEST, message, param=param)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = _HTTP_KINDS.get(exc.status_code, Kind.INVALID_REQUEST if exc.status_code < 500 else Kind.INTERNAL)
    message = exc.detail if isinstance(exc.detail, str) else "Request failed"
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}."
    elif exc.status_code == 405:
        # Starlette names only the first matching route's methods; a path may have several routes.
        allowed = sorted({m for route in request.app.routes if getattr(route, "methods", None)
                          and route.path_regex.match(request.url.path) for m in route.methods})
        headers["Allow"] = ", ".join(allowed)
        message = f"Method {request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}."
    return JSONResponse(envelope(kind, message), exc.status_code, headers=headers or None)


def storage_error(exc: Exception) -> APIError | None:
    """A full disk (ENOSPC, EDQUOT, SQLite's 'database or disk is full') as a 507; None for other errors."""
    import errno
    import sqlite3

    exc = getattr(exc, "orig", None) or exc  # the driver's error inside SQLAlchemy's
    full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        isinstance(exc, sqlite3.OperationalError) and "full" in str(exc))
    if not full:
        return None
    return APIError(Kind.INSUFFICIENT_STORAGE, "The server has run out of storage space; nothing was changed. "
                    "Retry once space has been freed.", code="insufficient_storage")


def database_unavailable(exc: Exception) -> APIError | None:
    """The database unreachable (down, restarting, refusing connections) as a 503 to retry; None otherwise."""
    if isinstance(exc, sa_exc.DBAPIError) and (exc.connection_invalidated or isinstance(
            exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) and storage_error(exc) is None):
        return APIError(Kind.UNAVAILABLE, "The database is unavailable; retry shortly.",
                        code="database_unavailable", headers={"Retry-After": "2"})
    return None


def object_store_unavailable(exc: Exception | None = None) -> APIError:
    """The object store unreachable: a 503 to retry."""
    return APIError(Kind.UNAVAILABLE, "The object store is unavailable; retry shortly.",
                    code="object_store_unavailable", headers={"Retry-After": "5"})


async def _object_store_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("object store unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(object_store_unavailable(exc))


def unexpected(scope: dict, exc: Exception) -> JSONResponse:
    """The answer to an exception nothing else handled (middleware.CatchAll sends it)."""
    if (err := database_unavailable(exc)) is not None:
        log.warning("database unavailable on %s %s: %s", scope["method"], scope["path"], exc)
        return error_response(err)
    if isinstance(exc, StorageUnavailable):
        log.warning("object store unavailable on %s %s: %s", scope["method"], scope["path"], exc)
        return error_response(object_store_unavailable(exc))
    if (err := storage_error(exc)) is not None:
        log.error("out of storage on %s %s: %s", scope["method"], scope["path"], exc)
        return error_response(err)
    log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
    return error_response(APIError(Kind.INTERNAL, "The server had an error while processing your request."))


def install(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StorageUnavailable, _object_store_error)
