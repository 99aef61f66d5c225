"""durable_state: asyncio-native persistence for statechart actors.

The names below are imported on first use (PEP 562): ``import
durable_state`` itself loads nothing but this module, so a Lambda handler or a
command pays only for the parts it touches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._clock import Clock as Clock
    from ._clock import ManualClock as ManualClock
    from ._clock import SystemClock as SystemClock
    from ._options import SessionOptions as SessionOptions
    from .actor import Actor as Actor
    from .actor import SystemIdTaken as SystemIdTaken
    from .actor import UnknownActor as UnknownActor
    from .errors import ActorNotFound as ActorNotFound
    from .errors import ActorStopped as ActorStopped
    from .errors import BackendURLError as BackendURLError
    from .errors import DurableStateError as DurableStateError
    from .errors import InvalidEvent as InvalidEvent
    from .errors import InvalidKey as InvalidKey
    from .errors import InvalidMachine as InvalidMachine
    from .errors import LockError as LockError
    from .errors import LockLost as LockLost
    from .errors import LockTimeout as LockTimeout
    from .errors import LockUnavailable as LockUnavailable
    from .errors import MicrostepLimitExceeded as MicrostepLimitExceeded
    from .errors import MissingDependency as MissingDependency
    from .errors import NotSerializable as NotSerializable
    from .errors import OutboxFull as OutboxFull
    from .errors import SnapshotCorrupt as SnapshotCorrupt
    from .errors import SnapshotIncompatible as SnapshotIncompatible
    from .errors import StatechartError as StatechartError
    from .errors import StorageError as StorageError
    from .errors import StorageUnavailable as StorageUnavailable
    from .errors import UnhandledEvent as UnhandledEvent
    from .errors import UnknownMachine as UnknownMachine
    from .errors import VersionConflict as VersionConflict
    from .locks import DynamoDBLockManager as DynamoDBLockManager
    from .locks import FileLockManager as FileLockManager
    from .locks import Lease as Lease
    from .locks import LockManager as LockManager
    from .locks import MemoryLockManager as MemoryLockManager
    from .persisted import Outcome as Outcome
    from .persisted import PersistedActor as PersistedActor
    from .persisted import fire_due_timers as fire_due_timers
    from .persisted import persisted_actor as persisted_actor
    from .persisted import with_persisted_actor as with_persisted_actor
    from .statechart import Machine as Machine
    from .statechart import Snapshot as Snapshot
    from .statechart import assign as assign
    from .statechart import cancel as cancel
    from .statechart import emit as emit
    from .statechart import enqueue_actions as enqueue_actions
    from .statechart import log as log
    from .statechart import raise_event as raise_event
    from .statechart import send_parent as send_parent
    from .statechart import send_to as send_to
    from .statechart import spawn_child as spawn_child
    from .statechart import state_in as state_in
    from .statechart import stop_child as stop_child
    from .storage import DynamoDBStorage as DynamoDBStorage
    from .storage import LocalFileStorage as LocalFileStorage
    from .storage import MemoryStorage as MemoryStorage
    from .storage import S3Storage as S3Storage
    from .storage import Storage as Storage
    from .storage import Stored as Stored
    from .system import ActorSystem as ActorSystem
    from .system import SendResult as SendResult
    from .system import WakerStats as WakerStats

__version__ = "0.1.0.dev0"

#: Where each exported name lives.
_SOURCES: dict[str, str] = {
    "Clock": "._clock",
    "ManualClock": "._clock",
    "SystemClock": "._clock",
    "SessionOptions": "._options",
    "Actor": ".actor",
    "SystemIdTaken": ".actor",
    "UnknownActor": ".actor",
    "ActorNotFound": ".errors",
    "ActorStopped": ".errors",
    "BackendURLError": ".errors",
    "DurableStateError": ".errors",
    "InvalidEvent": ".errors",
    "InvalidKey": ".errors",
    "InvalidMachine": ".errors",
    "LockError": ".errors",
    "LockLost": ".errors",
    "LockTimeout": ".errors",
    "LockUnavailable": ".errors",
    "MicrostepLimitExceeded": ".errors",
    "MissingDependency": ".errors",
    "NotSerializable": ".errors",
    "OutboxFull": ".errors",
    "SnapshotCorrupt": ".errors",
    "SnapshotIncompatible": ".errors",
    "StatechartError": ".errors",
    "StorageError": ".errors",
    "StorageUnavailable": ".errors",
    "UnhandledEvent": ".errors",
    "UnknownMachine": ".errors",
    "VersionConflict": ".errors",
    "DynamoDBLockManager": ".locks",
    "DynamoDBStorage": ".storage",
    "FileLockManager": ".locks",
    "Lease": ".locks",
    "LockManager": ".locks",
    "MemoryLockManager": ".locks",
    "Outcome": ".persisted",
    "PersistedActor": ".persisted",
    "fire_due_timers": ".persisted",
    "persisted_actor": ".persisted",
    "with_persisted_actor": ".persisted",
    "Machine": ".statechart",
    "Snapshot": ".statechart",
    "assign": ".statechart",
    "cancel": ".statechart",
    "emit": ".statechart",
    "enqueue_actions": ".statechart",
    "log": ".statechart",
    "raise_event": ".statechart",
    "send_parent": ".statechart",
    "send_to": ".statechart",
    "spawn_child": ".statechart",
    "state_in": ".statechart",
    "stop_child": ".statechart",
    "LocalFileStorage": ".storage",
    "MemoryStorage": ".storage",
    "S3Storage": ".storage",
    "Storage": ".storage",
    "Stored": ".storage",
    "ActorSystem": ".system",
    "SendResult": ".system",
    "WakerStats": ".system",
}


def _load(name: str) -> object:
    """Import the exported ``name`` from the module it lives in (PEP 562's hook).

    Raises:
        AttributeError: ``name`` is not one of the package's names.
    """
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'durable_state' has no attribute {name!r}")
    value: object = getattr(importlib.import_module(source, __name__), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


# Hidden from type checkers: they see the names imported above, and a
# module-level __getattr__ would make every misspelt name type-check (as Any).
if not TYPE_CHECKING:
    __getattr__ = _load


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = (
    "Actor",
    "ActorNotFound",
    "ActorStopped",
    "ActorSystem",
    "BackendURLError",
    "Clock",
    "DurableStateError",
    "DynamoDBLockManager",
    "DynamoDBStorage",
    "FileLockManager",
    "InvalidEvent",
    "InvalidKey",
    "InvalidMachine",
    "Lease",
    "LocalFileStorage",
    "LockError",
    "LockLost",
    "LockManager",
    "LockTimeout",
    "LockUnavailable",
    "Machine",
    "ManualClock",
    "MemoryLockManager",
    "MemoryStorage",
    "MicrostepLimitExceeded",
    "MissingDependency",
    "NotSerializable",
    "OutboxFull",
    "Outcome",
    "PersistedActor",
    "S3Storage",
    "SendResult",
    "SessionOptions",
    "Snapshot",
    "SnapshotCorrupt",
    "SnapshotIncompatible",
    "StatechartError",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "Stored",
    "SystemClock",
    "SystemIdTaken",
    "UnhandledEvent",
    "UnknownActor",
    "UnknownMachine",
    "VersionConflict",
    "WakerStats",
    "assign",
    "cancel",
    "emit",
    "enqueue_actions",
    "fire_due_timers",
    "log",
    "persisted_actor",
    "raise_event",
    "send_parent",
    "send_to",
    "spawn_child",
    "state_in",
    "stop_child",
    "with_persisted_actor",
)
