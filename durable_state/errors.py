"""The exceptions of durable_state.

Every exception the library raises derives from :class:`DurableStateError`.
They are grouped in families so that callers can catch at the level they care
about:

* :class:`StatechartError` -- a machine config, an event or a snapshot does not
  fit the statechart (:class:`InvalidMachine`, :class:`InvalidEvent`,
  :class:`SnapshotIncompatible`, :class:`NotSerializable`,
  :class:`MicrostepLimitExceeded`, :class:`ActorStopped`).
* :class:`StorageError` -- the snapshot store refused or failed
  (:class:`VersionConflict`, :class:`SnapshotCorrupt`, :class:`ActorNotFound`,
  :class:`InvalidKey`, :class:`StorageUnavailable`).
* :class:`LockError` -- a lease could not be had or was lost
  (:class:`LockTimeout`, :class:`LockLost`, :class:`LockUnavailable`).

Exceptions carry structured attributes (the key, the versions, the holder) and
build their message from them, so that logs and handlers need not parse text.
Driver exceptions (``botocore.exceptions.ClientError``, ``OSError``) are
translated at the boundary and chained with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = (
    "ActorNotFound",
    "ActorStopped",
    "BackendURLError",
    "DurableStateError",
    "InvalidEvent",
    "InvalidKey",
    "InvalidMachine",
    "LockError",
    "LockLost",
    "LockTimeout",
    "LockUnavailable",
    "MicrostepLimitExceeded",
    "MissingDependency",
    "NotSerializable",
    "OutboxFull",
    "SnapshotCorrupt",
    "SnapshotIncompatible",
    "StatechartError",
    "StorageError",
    "StorageUnavailable",
    "UnhandledEvent",
    "UnknownMachine",
    "VersionConflict",
)


class DurableStateError(Exception):
    """Root of every exception raised by durable_state."""


class MissingDependency(DurableStateError, ImportError):
    """An optional extra is needed for the feature that was used.

    Attributes:
        feature: what was used, e.g. ``"S3Storage"``.
        extra: the extra that provides it, e.g. ``"aws"``.
    """

    def __init__(self, feature: str, extra: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(
            f"{feature} needs the optional dependencies of the {extra!r} extra: "
            f'pip install "durable-state[{extra}]"'
        )


class BackendURLError(DurableStateError, ValueError):
    """A storage or lock URL (``file://``, ``s3://``, ``dynamodb://``) cannot be understood.

    Attributes:
        url: the rejected text.
        reason: what is wrong with it and what is accepted.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url!r}: {reason}")


# --------------------------------------------------------------------------- #
# Statechart
# --------------------------------------------------------------------------- #


class StatechartError(DurableStateError):
    """A machine config, an event or a snapshot does not fit the statechart."""


class InvalidMachine(StatechartError, ValueError):
    """A machine config is invalid; raised when the :class:`Machine` is built.

    Attributes:
        path: dotted path of the offending key, e.g. ``"states.cart.on.CHECKOUT.target"``.
        reason: what is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class InvalidEvent(StatechartError, ValueError):
    """An event is not a mapping with a string ``"type"`` (or a bare type string).

    Attributes:
        event: the rejected value.
        reason: what is wrong with it.
    """

    def __init__(self, event: object, reason: str) -> None:
        self.event = event
        self.reason = reason
        super().__init__(f"invalid event {event!r}: {reason}")


class NotSerializable(StatechartError, TypeError):
    """A value in a snapshot (usually in the context) cannot be encoded as JSON.

    Attributes:
        path: where the value sits, e.g. ``"context.items[2].price"``.
        value_type: the name of the offending value's type.
        reason: why it cannot be stored.
    """

    def __init__(self, path: str, value_type: str, reason: str = "") -> None:
        self.path = path
        self.value_type = value_type
        self.reason: str = reason or f"a {value_type} cannot be stored as JSON"
        super().__init__(f"{path}: {self.reason}")


class MicrostepLimitExceeded(StatechartError, RuntimeError):
    """A macrostep did not settle: eventless transitions or raised events loop.

    Attributes:
        limit: the number of microsteps that were allowed.
        event_type: the type of the event whose macrostep did not settle.
    """

    def __init__(self, limit: int, event_type: str) -> None:
        self.limit = limit
        self.event_type = event_type
        super().__init__(
            f"the macrostep for event {event_type!r} did not settle after {limit} "
            "microsteps (an 'always' or raised-event loop?)"
        )


class SnapshotIncompatible(StatechartError, ValueError):
    """A snapshot does not fit the machine it is restored into.

    Raised for another machine's snapshot, a snapshot written by a newer
    machine version, a state the machine no longer has, or a failed migration.
    The stored bytes are never modified when this is raised.

    Attributes:
        reason: what does not fit.
        key: the storage key the snapshot came from, when known.
    """

    def __init__(self, reason: str, *, key: str | None = None) -> None:
        self.reason = reason
        self.key = key
        where = f" (stored at {key!r})" if key is not None else ""
        super().__init__(f"snapshot does not fit the machine{where}: {reason}")


class UnknownMachine(StatechartError, LookupError):
    """A machine id that is not among the machines an actor system knows.

    Raised when a stored snapshot names a machine that is not registered (the
    snapshot is left untouched), when a machine is asked for by an id nobody
    registered, or when an :class:`~durable_state.ActorSystem` is built with
    a machine whose ``send_to(..., machine=...)`` names a machine it lacks.

    Attributes:
        machine_id: the id asked for (``None`` when the snapshot names none).
        key: the storage key of the snapshot, when a snapshot named it.
        known: the ids that are registered.
        sender: the id of the machine whose ``send_to`` names it, if one does.
    """

    def __init__(
        self,
        machine_id: str | None,
        *,
        key: str | None = None,
        known: tuple[str, ...] = (),
        sender: str | None = None,
    ) -> None:
        self.machine_id = machine_id
        self.key = key
        self.known = known
        self.sender = sender
        where = f" (the snapshot stored at {key!r} names it)" if key is not None else ""
        if sender is not None:
            where = f" (machine {sender!r} sends to it with send_to(..., machine=...))"
        have = ", ".join(repr(k) for k in known) or "none"
        super().__init__(f"no machine {machine_id!r} is registered{where}; known: {have}")


class OutboxFull(StatechartError):
    """A step sent more messages than an actor may hold undelivered.

    Messages wait in the sender's snapshot until they are delivered; a step
    that would make the outbox longer than the limit is rolled back.

    Attributes:
        target: the receiver of the message that did not fit.
        limit: the most undelivered messages an actor may hold.
    """

    def __init__(self, target: str, limit: int) -> None:
        self.target = target
        self.limit = limit
        super().__init__(
            f"cannot send to {target!r}: {limit} messages already wait for delivery "
            "in this actor's outbox"
        )


class UnhandledEvent(StatechartError):
    """An event the actor's current state does not handle: nothing changed.

    Not raised by sending itself (a send reports
    :attr:`~durable_state.Outcome.UNHANDLED`); raised by the integrations'
    :func:`~durable_state.integrations.send_event`, so that a web request
    whose event did nothing gets an error answer (409 by default).

    Attributes:
        key: the actor's id.
        event_type: the event's type.
        state: the actor's state value when the event arrived.
        status: the actor's status (``"done"`` when it has finished).
    """

    def __init__(self, key: str, event_type: str, state: object, status: str) -> None:
        self.key = key
        self.event_type = event_type
        self.state = state
        self.status = status
        where = "has finished" if status != "active" else f"in state {state!r} ignores it"
        super().__init__(f"actor {key!r} did not handle {event_type!r}: it {where}")


class ActorStopped(StatechartError, RuntimeError):
    """An event was sent to an actor that is stopped (or not started)."""

    def __init__(self, machine_id: str, status: str) -> None:
        self.machine_id = machine_id
        self.status = status
        super().__init__(f"actor of machine {machine_id!r} is {status}; it takes no events")


# --------------------------------------------------------------------------- #
# Storage
# --------------------------------------------------------------------------- #


class StorageError(DurableStateError):
    """The snapshot store refused an operation or failed to perform it.

    Attributes:
        key: the key the operation was about, when there is one.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class VersionConflict(StorageError):
    """A conditional write or delete found another version than expected.

    Attributes:
        key: the key.
        expected: the version the caller expected (``None``: "must not exist").
        actual: the version found, when the backend can tell (``None`` when the
            key does not exist or the backend does not say).
    """

    def __init__(self, key: str, *, expected: str | None, actual: str | None = None) -> None:
        self.expected = expected
        self.actual = actual
        want = "absent" if expected is None else f"version {expected!r}"
        found = f"; found version {actual!r}" if actual is not None else ""
        super().__init__(f"version conflict on {key!r}: expected {want}{found}", key=key)


class SnapshotCorrupt(StorageError, ValueError):
    """Stored bytes are not a snapshot this library can decode.

    The stored bytes are left untouched.

    Attributes:
        key: where the bytes were read from.
        reason: why they could not be decoded.
    """

    def __init__(self, key: str | None, reason: str) -> None:
        self.reason = reason
        where = f" at {key!r}" if key is not None else ""
        super().__init__(f"corrupt snapshot{where}: {reason}", key=key)


class ActorNotFound(StorageError, LookupError):
    """No snapshot is stored for the actor and creating one was not allowed."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no actor stored at {key!r}", key=key)


class InvalidKey(StorageError, ValueError):
    """A key is empty, contains NUL, is too long for the backend, or is not a str.

    Attributes:
        reason: what is wrong with it.
    """

    def __init__(self, key: object, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"invalid key {key!r}: {reason}", key=key if isinstance(key, str) else None
        )


class StorageUnavailable(StorageError):
    """The backend failed (I/O error, network, permissions, throttling).

    The original driver exception is chained as ``__cause__``.

    Attributes:
        operation: ``"read"``, ``"write"``, ``"delete"``, ``"exists"`` or ``"list"``.
    """

    def __init__(self, operation: str, key: str | None, detail: str) -> None:
        self.operation = operation
        self.detail = detail
        where = f" {key!r}" if key is not None else ""
        super().__init__(f"storage {operation}{where} failed: {detail}", key=key)


# --------------------------------------------------------------------------- #
# Locks
# --------------------------------------------------------------------------- #


class LockError(DurableStateError):
    """A lease could not be acquired, renewed or released.

    Attributes:
        key: the locked key.
    """

    def __init__(self, message: str, *, key: str) -> None:
        self.key = key
        super().__init__(message)


class LockTimeout(LockError, TimeoutError):
    """The lease is held by someone else and did not become free in time.

    Attributes:
        key: the key.
        holder: the current holder's owner id, when known.
        expires_at: when the current lease runs out (epoch seconds), when known.
        waited: how long the caller waited, in seconds.
    """

    def __init__(
        self,
        key: str,
        *,
        holder: str | None = None,
        expires_at: float | None = None,
        waited: float = 0.0,
    ) -> None:
        self.holder = holder
        self.expires_at = expires_at
        self.waited = waited
        who = f" by {holder!r}" if holder else ""
        until = f" until {expires_at:.3f}" if expires_at is not None else ""
        super().__init__(
            f"lock on {key!r} is held{who}{until}; gave up after {waited:.3f}s", key=key
        )


class LockLost(LockError):
    """A lease is no longer held by its owner (expired and taken over, or removed).

    Attributes:
        key: the key.
        owner: the owner id of the lost lease.
        token: the fencing token of the lost lease.
        reason: what was observed.
    """

    def __init__(self, key: str, *, owner: str, token: int, reason: str = "") -> None:
        self.owner = owner
        self.token = token
        self.reason = reason
        tail = f": {reason}" if reason else ""
        super().__init__(
            f"lease on {key!r} (owner {owner!r}, token {token}) was lost{tail}", key=key
        )


class LockUnavailable(LockError):
    """The lock backend failed (I/O error, network, throttling).

    The original driver exception is chained as ``__cause__``.
    """

    def __init__(self, operation: str, key: str, detail: str) -> None:
        self.operation = operation
        self.detail = detail
        super().__init__(f"lock {operation} on {key!r} failed: {detail}", key=key)
