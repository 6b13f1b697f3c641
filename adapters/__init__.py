"""The adapter store: publish, resolve, list, delete named LoRA adapters."""

from adapters.store import (
    AdapterError,
    AdapterExists,
    AdapterMeta,
    AdapterNotFound,
    AdapterStore,
    InvalidAdapter,
    InvalidAdapterName,
    validate_name,
)

__all__ = [
    "AdapterError", "AdapterExists", "AdapterMeta", "AdapterNotFound", "AdapterStore", "InvalidAdapter",
    "InvalidAdapterName", "validate_name",
]
