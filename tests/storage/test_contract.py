"""The Storage contract (durable_state.testing.storage), run against every bundled backend.

The ``storage`` fixture in conftest.py makes each backend in turn (see
conftest.BACKENDS); this subclass only says where a test server differs
from the service it stands in for.
"""

from __future__ import annotations

from durable_state.storage import S3Storage, Storage
from durable_state.testing.storage import StorageContract


class TestStorageContract(StorageContract):
    """Every bundled storage, as conftest.storage makes them."""

    def reports_found_version(self, storage: Storage) -> bool:
        """S3 refuses a conditional write without saying which version it holds."""
        return not isinstance(storage, S3Storage)

    def unsupported_key(self, storage: Storage, key: str) -> str | None:
        """moto's URL routing drops keys containing LF (real S3 accepts them)."""
        if "\n" in key and isinstance(storage, S3Storage):
            return "moto's URL routing drops keys containing LF (real S3 accepts them)"
        return None
