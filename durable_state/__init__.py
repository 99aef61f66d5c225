"""durable_state: asyncio-native persistence for statechart actors."""

from ._clock import Clock as Clock
from ._clock import ManualClock as ManualClock
from ._clock import SystemClock as SystemClock
from ._options import SessionOptions as SessionOptions
from .actor import Actor as Actor
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
from .statechart import emit as emit
from .statechart import raise_event as raise_event
from .statechart import state_in as state_in
from .storage import LocalFileStorage as LocalFileStorage
from .storage import MemoryStorage as MemoryStorage
from .storage import S3Storage as S3Storage
from .storage import Storage as Storage
from .storage import Stored as Stored
from .system import ActorSystem as ActorSystem
from .system import SendResult as SendResult
from .system import WakerStats as WakerStats

__version__ = "0.1.0.dev0"

__all__ = (
    "Actor",
    "ActorNotFound",
    "ActorStopped",
    "ActorSystem",
    "BackendURLError",
    "Clock",
    "DurableStateError",
    "DynamoDBLockManager",
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
    "UnhandledEvent",
    "UnknownMachine",
    "VersionConflict",
    "WakerStats",
    "assign",
    "emit",
    "fire_due_timers",
    "persisted_actor",
    "raise_event",
    "state_in",
    "with_persisted_actor",
)
