"""Built-in actions and guards, and the effect records the pure core returns.

Implementations written by users are plain callables ``fn(context, event,
**params)``. The built-ins below wrap such callables (or constant values) and
tell the interpreter what to do with their result:

* :func:`assign` merges the mapping its function returns into the context;
* :func:`raise_event` puts an event on the internal queue (or schedules it);
* :func:`emit` hands an event to the actor's outside listeners after the
  macrostep;
* :func:`state_in` is a guard that holds while a state is active.

Every other action is a *custom* action: the pure core does not run it, it
returns an :class:`ActionEffect` that the actor executes after the macrostep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = (
    "ActionEffect",
    "ActionImpl",
    "ActorImpl",
    "Assign",
    "AssignFn",
    "AssignValue",
    "CancelTimerEffect",
    "Context",
    "DelayImpl",
    "Effect",
    "Emit",
    "EmitEffect",
    "Event",
    "EventFn",
    "GuardImpl",
    "InvokeEffect",
    "RaiseEvent",
    "ScheduleTimerEffect",
    "StateIn",
    "StopInvokeEffect",
    "assign",
    "emit",
    "raise_event",
    "state_in",
)

Event: TypeAlias = Mapping[str, Any]
"""An event: a mapping with at least a string ``"type"``."""

Context: TypeAlias = Mapping[str, Any]
"""A machine's context (extended state): a JSON-able mapping, never changed in place."""

# Implementations are called as fn(context, event, **params). Each type below
# is a union of the plain two-argument form, which lets a type checker infer
# the parameters of a lambda, and a form with any parameters, for functions
# that take params by keyword; both check the return type. (A callable type
# that says "context, event, then anything" exists, Concatenate[..., ...],
# but mypy then cannot infer the type of any lambda.)

AssignFn: TypeAlias = (
    Callable[[Context, Event], Mapping[str, Any]] | Callable[..., Mapping[str, Any]]
)
"""``fn(context, event, **params) -> mapping`` for :func:`assign`."""

AssignValue: TypeAlias = (
    Callable[[Context, Event], Any]
    | Callable[..., Any]
    | bool
    | int
    | float
    | str
    | Sequence[Any]
    | Mapping[str, Any]
    | None
)
"""A value in :func:`assign`'s per-key form: ``fn(context, event, **params)`` or a value."""

EventFn: TypeAlias = Callable[[Context, Event], Event] | Callable[..., Event]
"""``fn(context, event, **params) -> event`` for :func:`raise_event` and :func:`emit`."""


EventOrFn: TypeAlias = Event | EventFn


class Assign:
    """An action that merges a mapping into the context (see :func:`assign`)."""

    __slots__ = ("fn",)

    def __init__(self, fn: AssignFn | Mapping[str, AssignValue]) -> None:
        self.fn: AssignFn | Mapping[str, AssignValue] = fn

    def __repr__(self) -> str:
        return f"assign({self.fn!r})"


class RaiseEvent:
    """An action that raises an event (see :func:`raise_event`)."""

    __slots__ = ("delay", "event", "id")

    def __init__(
        self, event: EventOrFn, *, delay: float | str | None = None, id: str | None = None
    ) -> None:
        self.event: EventOrFn = event
        self.delay: float | str | None = delay
        self.id: str | None = id

    def __repr__(self) -> str:
        return f"raise_event({self.event!r})"


class Emit:
    """An action that emits an event to outside listeners (see :func:`emit`)."""

    __slots__ = ("event",)

    def __init__(self, event: EventOrFn) -> None:
        self.event: EventOrFn = event

    def __repr__(self) -> str:
        return f"emit({self.event!r})"


class StateIn:
    """A guard that holds while a state is active (see :func:`state_in`)."""

    __slots__ = ("state",)

    def __init__(self, state: str | Mapping[str, Any]) -> None:
        self.state: str | Mapping[str, Any] = state

    @property
    def state_id(self) -> str | None:
        """The state id or path given as a string (None for a state value mapping)."""
        return self.state if isinstance(self.state, str) else None

    def __repr__(self) -> str:
        return f"state_in({self.state!r})"


ActionImpl: TypeAlias = (
    Assign | RaiseEvent | Emit | Callable[[Context, Event], object] | Callable[..., object]
)
"""What ``actions=`` maps a name to: a built-in action, or a custom action
``fn(context, event, **params)`` (run by the actor; it may return an awaitable)."""

GuardImpl: TypeAlias = (
    Callable[[Context, Event], bool] | Callable[..., bool] | StateIn | Mapping[str, Any]
)
"""What ``guards=`` maps a name to: ``fn(context, event, **params) -> bool``, a
:func:`state_in` guard, or a guard reference such as ``{"type": "and", ...}``."""

DelayImpl: TypeAlias = float | Callable[[Context, Event], float]
"""What ``delays=`` maps a name to: milliseconds, or ``fn(context, event) -> ms``."""

ActorImpl: TypeAlias = Callable[[Any], Any]
"""What ``actors=`` maps a name to: ``fn(input)``, usually async, whose result is
the invoked actor's output."""


def assign(fn: AssignFn | Mapping[str, AssignValue]) -> Assign:
    """Build an action that merges a mapping into the context.

    Args:
        fn: called as ``fn(context, event, **params)``; the mapping it returns
            is merged (shallowly) into a new context. Or xstate's per-key
            form, a mapping of context keys to new values: a callable value
            is called as ``value(context, event, **params)`` (every one with
            the context as it was before this assign), any other value is
            stored as is.

    Returns:
        An action to use in ``actions=`` or inline in a config.

    Example:
        >>> add = assign(lambda context, event, by=1: {"items": context["items"] + by})
    """
    return Assign(fn)


def raise_event(
    event: EventOrFn | str, *, delay: float | str | None = None, id: str | None = None
) -> RaiseEvent:
    """Build an action that raises an event to the machine itself.

    Without ``delay`` the event goes on the internal queue and is processed
    in the same macrostep, before the next external event. With ``delay``
    (milliseconds, or the name of an entry of ``delays=``) it becomes a
    durable timer, cancelled with its ``id`` when the raising state exits
    only if it was scheduled by an ``after`` transition.

    Args:
        event: an event mapping (or a type string), or
            ``fn(context, event, **params) -> event``.
        delay: optional delay in ms or a delay name.
        id: optional id of the scheduled event (defaults to its type).

    Returns:
        An action.
    """
    if isinstance(event, str):
        event = {"type": event}
    return RaiseEvent(event, delay=delay, id=id)


def emit(event: EventOrFn | str) -> Emit:
    """Build an action that emits an event to the actor's listeners.

    Emitted events are delivered after the macrostep (and, for a persisted
    actor, only after its snapshot was saved), never to the machine itself.

    Args:
        event: an event mapping (or a type string), or
            ``fn(context, event, **params) -> event``.

    Returns:
        An action.
    """
    if isinstance(event, str):
        event = {"type": event}
    return Emit(event)


def state_in(state: str | Mapping[str, Any]) -> StateIn:
    """Build a guard that holds while a state is active, as xstate's ``stateIn``.

    Args:
        state: a state id such as ``"#order.paid"``; a state value path from
            the root such as ``"checkout.paying"``; or a state value such as
            ``{"checkout": "paying"}``, which holds when every state it names
            is active (as :meth:`Snapshot.matches`). A string without ``#``
            that is no path from the root is taken as an id (``"order.paid"``).

    Returns:
        A guard, usable in ``guards=`` or inline in a config. A state that
        does not exist makes building the :class:`Machine` fail.
    """
    return StateIn(state)


# --------------------------------------------------------------------------- #
# Effects: what the pure core asks the shell to do after a macrostep
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, slots=True)
class ActionEffect:
    """Run a custom action implementation.

    Attributes:
        type: the action's name.
        exec: the implementation.
        context: the context at the point the action was reached.
        event: the event being processed.
        params: keyword arguments from the config's ``params``.
    """

    type: str
    exec: Callable[..., Any]
    context: Mapping[str, Any]
    event: Event
    params: Mapping[str, Any] | None = None

    def run(self) -> Any:
        """Call the implementation as ``exec(context, event, **params)``."""
        if self.params:
            return self.exec(self.context, self.event, **self.params)
        return self.exec(self.context, self.event)


@dataclass(frozen=True, slots=True)
class EmitEffect:
    """Deliver an emitted event to outside listeners."""

    event: Event


@dataclass(frozen=True, slots=True)
class ScheduleTimerEffect:
    """Arm a durable timer: deliver ``event`` at ``due_ms`` (epoch ms)."""

    id: str
    event: Event
    due_ms: float


@dataclass(frozen=True, slots=True)
class CancelTimerEffect:
    """Disarm the timer with this id."""

    id: str


@dataclass(frozen=True, slots=True)
class InvokeEffect:
    """Start an invoked actor ``src`` with ``input`` under ``id``."""

    id: str
    src: str
    input: Any = None


@dataclass(frozen=True, slots=True)
class StopInvokeEffect:
    """Stop the invoked actor with this id."""

    id: str


Effect: TypeAlias = (
    ActionEffect
    | EmitEffect
    | ScheduleTimerEffect
    | CancelTimerEffect
    | InvokeEffect
    | StopInvokeEffect
)


@dataclass(frozen=True, slots=True)
class Timer:
    """A pending delayed event, due at an absolute time (epoch ms).

    Attributes:
        id: the timer's id (an ``after`` event type, or a ``raise_event`` id).
        event: the event delivered when it is due.
        due_ms: when it is due (epoch ms of the actor's clock).
        seq: its scheduling order, which breaks ties between equal due times.
    """

    id: str
    event: Event
    due_ms: float
    seq: int = field(default=0, compare=False)
    _persisted: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def persisted(self) -> dict[str, Any]:
        """The timer's entry in ``$durable.timers``, built once and shared: read-only."""
        entry = self._persisted
        if entry is None:
            entry = {"id": self.id, "event": dict(self.event), "due": self.due_ms}
            object.__setattr__(self, "_persisted", entry)
        return entry
