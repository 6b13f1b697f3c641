"""How the app is put together from features.

A feature is a package under `service/` (files, fine_tuning, inference, ...) with its router, service,
protocol and store side by side, and a `feature.py` that says, in one `Feature`, what it adds:

- `stores(db)`: its stores (its tables and queries). Every feature's stores are built first, so that a
  service may take another feature's store through a small protocol that store meets (`FileUser`,
  `ModelOwners`) without the two features importing each other.
- `build(components)`: its services, built from the core (settings, database, object store, adapter
  store, metrics, base model) and the services of the features listed before it; each is passed its
  collaborators through its constructor and `add`ed here. Long-running parts register `on_start` and
  `on_stop` callbacks.
- `routers`: its routes; they reach the services through `Annotated[..., Depends(provide(Cls))]` aliases
  declared in the feature's own router module.

`service/app.py` lists the features in build order (FEATURES); adding one is a new package, one line
there, and a migration for its tables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Request

from service.db import Database
from service.metrics import Metrics
from service.settings import Settings

T = TypeVar("T")


class Components:
    """The core every feature builds on, and the stores and services built so far, one per class."""

    def __init__(self, settings: Settings, db: Database, objects, adapters, metrics: Metrics, model_path: Path):
        self.settings, self.db, self.objects, self.adapters = settings, db, objects, adapters
        self.metrics, self.model_path = metrics, model_path
        self._built: dict[type, Any] = {}
        self.starts: list[Callable[[], Awaitable[None] | None]] = []
        self.stops: list[Callable[[], Awaitable[None] | None]] = []

    def add(self, *objects: Any) -> None:
        for obj in objects:
            if type(obj) in self._built:
                raise RuntimeError(f"two features both make a {type(obj).__name__}")
            self._built[type(obj)] = obj

    def get(self, cls: type[T]) -> T:
        """The one `cls` a feature made; an error naming it if no feature listed earlier did."""
        try:
            return self._built[cls]
        except KeyError:
            raise LookupError(f"no {cls.__name__} has been built: list the feature that makes it earlier in "
                              "service.app.FEATURES") from None

    def implementing(self, protocol: type) -> list:
        """Every store or service built so far that meets `protocol` (a runtime-checkable Protocol)."""
        return [obj for obj in self._built.values() if isinstance(obj, protocol)]

    def one(self, protocol: type):
        """The one store or service that meets `protocol`; an error naming it if none or several do."""
        found = self.implementing(protocol)
        if len(found) != 1:
            raise LookupError(f"{len(found)} features make a {protocol.__name__} (one must): check "
                              "service.app.FEATURES")
        return found[0]

    def on_start(self, start: Callable[[], Awaitable[None] | None]) -> None:
        self.starts.append(start)

    def on_stop(self, stop: Callable[[], Awaitable[None] | None]) -> None:
        """Stops run in the reverse order of their registration."""
        self.stops.append(stop)


@dataclass(frozen=True)
class Feature:
    name: str
    routers: Sequence[APIRouter] = ()
    stores: Callable[[Database], Sequence[Any]] = lambda db: ()
    build: Callable[[Components], None] | None = None
    route_responses: bool = True  # its routes answer errors in OpenAI's envelope (the dashboard's pages do not)
    mounts: Sequence[tuple[str, Any, str]] = field(default=())  # (path, ASGI app, name), e.g. static files


def provide(cls: type[T]) -> Callable[[Request], T]:
    """A FastAPI dependency returning the app's one `cls`."""

    def dependency(request: Request) -> T:
        return request.app.state.components.get(cls)

    dependency.__name__ = f"provide_{cls.__name__}"
    return dependency
