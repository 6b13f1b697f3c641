"""The adapter store: publish, resolve, list, delete named LoRA adapters; the object store beneath.

`AdapterStore` keeps adapters in a local directory (the default); `ObjectAdapterStore` keeps them
in an object store (S3) and serves them from a local, content-addressed cache.
"""

from adapters.objects import ObjectStore, StorageUnavailable, open_objects
from adapters.remote import AdapterCache, ObjectAdapterStore
from adapters.store import (
    AdapterError,
    AdapterExists,
    AdapterMeta,
    AdapterNotFound,
    AdapterStore,
    InvalidAdapter,
    InvalidAdapterName,
    StoredFile,
    validate_name,
)

__all__ = [
    "AdapterCache",
    "AdapterError",
    "AdapterExists",
    "AdapterMeta",
    "AdapterNotFound",
    "AdapterStore",
    "InvalidAdapter",
    "InvalidAdapterName",
    "ObjectAdapterStore",
    "ObjectStore",
    "StorageUnavailable",
    "StoredFile",
    "open_objects",
    "validate_name",
]
