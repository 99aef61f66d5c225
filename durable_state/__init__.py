"""durable_state: asyncio-native persistence for statechart actors."""

from ._clock import ManualClock as ManualClock
from ._clock import SystemClock as SystemClock
from .errors import ActorNotFound as ActorNotFound
from .errors import ActorStopped as ActorStopped
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
from .errors import SnapshotCorrupt as SnapshotCorrupt
from .errors import SnapshotIncompatible as SnapshotIncompatible
from .errors import StatechartError as StatechartError
from .errors import StorageError as StorageError
from .errors import StorageUnavailable as StorageUnavailable
from .errors import VersionConflict as VersionConflict

__version__ = "0.1.0.dev0"

__all__ = (
    "ActorNotFound",
    "ActorStopped",
    "DurableStateError",
    "InvalidEvent",
    "InvalidKey",
    "InvalidMachine",
    "LockError",
    "LockLost",
    "LockTimeout",
    "LockUnavailable",
    "ManualClock",
    "MicrostepLimitExceeded",
    "MissingDependency",
    "NotSerializable",
    "SnapshotCorrupt",
    "SnapshotIncompatible",
    "StatechartError",
    "StorageError",
    "StorageUnavailable",
    "SystemClock",
    "VersionConflict",
)
