"""The app in this process (FastAPI's TestClient), on its embedded default with no engine and no model:
the fast layer's way to test routes, features and their wiring in seconds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import FEATURES, create_app
from service.components import Feature
from service.settings import Settings


@contextlib.contextmanager
def app_client(data_dir: Path, features: list[Feature] | None = None, **settings) -> Iterator[TestClient]:
    """A client of the app with `features` (default: all of them); its model is a name only (nothing loads it
    without an engine)."""
    config = Settings(data_dir=data_dir, model=str(data_dir / "model-not-loaded"), engine="none", **settings)
    with TestClient(create_app(config, FEATURES if features is None else features)) as client:
        yield client
