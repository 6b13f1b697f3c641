"""Alembic's environment: migrations run on the connection `service.migrations.upgrade` hands over.

`target_metadata` is every feature's tables (each store declares its own on the one MetaData), for
`alembic revision --autogenerate`; the versions themselves are written out by hand."""

from alembic import context

import service.app  # noqa: F401 - imports every feature's store, so every table is on the MetaData
from service.db import metadata

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata,
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
