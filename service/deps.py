"""The caller's identity, as `Annotated` aliases that routes declare: the calling key's project, or the
admin key. (Each feature declares the aliases of its own services beside its routes.)"""

from typing import Annotated

from fastapi import Depends, Request

from service.errors import APIError, Kind
from service.projects.keys import Caller, Keyring


def _project(request: Request) -> str:
    """The calling key's project (set by the auth middleware); the admin key has none."""
    caller: Caller = request.state.caller
    if caller.admin:
        raise APIError(Kind.PERMISSION, "This is the admin key: it manages projects, service accounts and "
                       "checkpoint permissions. Call this endpoint with a project's key.", code="admin_key_not_allowed")
    return caller.project_id


def _admin(request: Request) -> Caller:
    caller: Caller = request.state.caller
    if not caller.admin:
        configured = request.app.state.components.get(Keyring).admin.configured
        raise APIError(Kind.PERMISSION, "This endpoint needs the admin key." if configured else
                       "Project administration is off: start the server with an admin key (FTSERVE_ADMIN_KEY "
                       "or --admin-key-file).", code="admin_key_required")
    return caller


Project = Annotated[str, Depends(_project)]
Admin = Annotated[Caller, Depends(_admin)]
