"""Versioned compare-and-set storage for snapshots.

A :class:`Storage` is a key-value store whose writes can say "only if nobody
wrote since I read": every write returns a new version, and ``write`` and
``delete`` take the version the caller last saw. That is what makes a save
safe with or without a lock. Four backends keep the same contract:

* :class:`LocalFileStorage` -- files in a local directory, atomic replace,
  compare-and-set across the processes of one host (the embedded default);
* :class:`S3Storage` -- objects in an S3 bucket, ETag as version, S3's
  conditional writes (needs the ``aws`` extra; imported lazily);
* :class:`DynamoDBStorage` -- items in a DynamoDB table (the lock manager's
  table can hold them), values too large for an item spilled to S3 (needs
  the ``aws`` extra; imported lazily);
* :class:`MemoryStorage` -- a dict, for tests and examples.

Every backend also keeps a due index (which actors have a timer due when),
and recognises its own write when the answer to it was lost. A new backend
subclasses :class:`BaseStorage`, which holds the argument checks and that
rule, and implements a few primitives.
"""

from ._base import BaseStorage as BaseStorage
from ._protocol import ANY_VERSION as ANY_VERSION
from ._protocol import DueEntry as DueEntry
from ._protocol import Storage as Storage
from ._protocol import Stored as Stored
from .dynamodb import DynamoDBStorage as DynamoDBStorage
from .local import LocalFileStorage as LocalFileStorage
from .memory import MemoryStorage as MemoryStorage
from .s3 import S3Storage as S3Storage

__all__ = (
    "ANY_VERSION",
    "BaseStorage",
    "DueEntry",
    "DynamoDBStorage",
    "LocalFileStorage",
    "MemoryStorage",
    "S3Storage",
    "Storage",
    "Stored",
)
