"""Built-in actions and guards, and the effect records the pure core returns.

Implementations written by users are plain callables ``fn(context, event,
**params)``. The built-ins below wrap such callables (or constant values) and
tell the interpreter what to do with their result:

* :func:`assign` merges the mapping its function returns into the context;
* :func:`raise_event` puts an event on the internal queue (or schedules it);
* :func:`emit` hands an event to the actor's outside listeners after the
  macrostep;
* :func:`state_in` is a guard that holds while a state is active;
* :func:`send_to` and :func:`send_parent` send an event to another actor,
  :func:`spawn_child` and :func:`stop_child` start and stop child machines,
  :func:`cancel` cancels a delayed event, :func:`log` logs, and
  :func:`enqueue_actions` decides at run time which actions to run.

Every other action is a *custom* action: the pure core does not run it, it
returns an :class:`ActionEffect` that the actor executes after the macrostep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from ._machine import Machine

__all__ = (
    "ActionEffect",
    "ActionImpl",
    "ActionQueue",
    "ActorImpl",
    "Assign",
    "AssignFn",
    "AssignValue",
    "Cancel",
    "CancelTimerEffect",
    "Context",
    "DelayImpl",
    "Effect",
    "Emit",
    "EmitEffect",
    "EnqueueActions",
    "EnqueueFn",
    "Event",
    "EventFn",
    "GuardImpl",
    "InvokeEffect",
    "Log",
    "LogEffect",
    "RaiseEvent",
    "ScheduleTimerEffect",
    "SendEffect",
    "SendTo",
    "SpawnChild",
    "SpawnEffect",
    "StateIn",
    "StopChild",
    "StopChildEffect",
    "StopInvokeEffect",
    "ValueOrFn",
    "assign",
    "cancel",
    "emit",
    "enqueue_actions",
    "log",
    "raise_event",
    "send_parent",
    "send_to",
    "spawn_child",
    "state_in",
    "stop_child",
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

ValueOrFn: TypeAlias = Callable[[Context, Event], object] | Callable[..., object] | object
"""A value, or ``fn(context, event, **params) -> value`` that computes it at run time
(a spawn input, a log message)."""

StrOrFn: TypeAlias = str | Callable[[Context, Event], str] | Callable[..., str]


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


class SendTo:
    """An action that sends an event to another actor (see :func:`send_to`, :func:`send_parent`)."""

    __slots__ = ("delay", "event", "id", "machine", "target", "to_parent")

    def __init__(
        self,
        target: StrOrFn | None,
        event: EventOrFn,
        *,
        to_parent: bool = False,
        machine: str | None = None,
        delay: float | str | None = None,
        id: str | None = None,
    ) -> None:
        self.target: StrOrFn | None = target
        self.event: EventOrFn = event
        self.to_parent: bool = to_parent
        self.machine: str | None = machine
        self.delay: float | str | None = delay
        self.id: str | None = id

    def __repr__(self) -> str:
        if self.to_parent:
            return f"send_parent({self.event!r})"
        return f"send_to({self.target!r}, {self.event!r})"


class SpawnChild:
    """An action that starts a child machine (see :func:`spawn_child`)."""

    __slots__ = ("id", "input", "src", "system_id")

    def __init__(
        self, src: str, *, id: StrOrFn, input: ValueOrFn = None, system_id: str | None = None
    ) -> None:
        self.src: str = src
        self.id: StrOrFn = id
        self.input: ValueOrFn = input
        self.system_id: str | None = system_id

    def __repr__(self) -> str:
        return f"spawn_child({self.src!r}, id={self.id!r})"


class StopChild:
    """An action that stops a child actor (see :func:`stop_child`)."""

    __slots__ = ("id",)

    def __init__(self, id: StrOrFn) -> None:
        self.id: StrOrFn = id

    def __repr__(self) -> str:
        return f"stop_child({self.id!r})"


class Cancel:
    """An action that cancels a pending delayed event (see :func:`cancel`)."""

    __slots__ = ("id",)

    def __init__(self, id: StrOrFn) -> None:
        self.id: StrOrFn = id

    def __repr__(self) -> str:
        return f"cancel({self.id!r})"


class Log:
    """An action that logs a message (see :func:`log`)."""

    __slots__ = ("message",)

    def __init__(self, message: ValueOrFn) -> None:
        self.message: ValueOrFn = message

    def __repr__(self) -> str:
        return f"log({self.message!r})"


class EnqueueActions:
    """An action that chooses actions at run time (see :func:`enqueue_actions`)."""

    __slots__ = ("fn",)

    def __init__(self, fn: EnqueueFn) -> None:
        self.fn: EnqueueFn = fn

    def __repr__(self) -> str:
        return f"enqueue_actions({self.fn!r})"


class ActionQueue:
    """What an :func:`enqueue_actions` function is given: ``q(action)`` enqueues an action.

    The enqueued actions run in order once the function returns, each with
    the context the actions before it left (as xstate's ``enqueueActions``).
    ``q`` takes what a config's ``actions`` takes: a name in ``actions=``, a
    reference ``{"type": name, "params": {...}}``, a built-in action or a
    custom action callable. The methods enqueue built-ins directly.
    """

    __slots__ = ("_check", "_items")

    def __init__(self, check: Callable[[Any], bool]) -> None:
        self._items: list[Any] = []
        self._check = check

    @property
    def items(self) -> tuple[Any, ...]:
        """What was enqueued so far, in order."""
        return tuple(self._items)

    def __call__(self, action: Any) -> None:
        """Enqueue an action: a name, a ``{"type", "params"}`` reference, a built-in or a callable."""
        self._items.append(action)

    def assign(self, fn: AssignFn | Mapping[str, AssignValue]) -> None:
        """Enqueue :func:`assign`."""
        self._items.append(assign(fn))

    def raise_event(
        self, event: EventOrFn | str, *, delay: float | str | None = None, id: str | None = None
    ) -> None:
        """Enqueue :func:`raise_event`."""
        self._items.append(raise_event(event, delay=delay, id=id))

    def send_to(
        self,
        target: StrOrFn,
        event: EventOrFn | str,
        *,
        machine: str | None = None,
        delay: float | str | None = None,
        id: str | None = None,
    ) -> None:
        """Enqueue :func:`send_to`."""
        self._items.append(send_to(target, event, machine=machine, delay=delay, id=id))

    def send_parent(
        self, event: EventOrFn | str, *, delay: float | str | None = None, id: str | None = None
    ) -> None:
        """Enqueue :func:`send_parent`."""
        self._items.append(send_parent(event, delay=delay, id=id))

    def emit(self, event: EventOrFn | str) -> None:
        """Enqueue :func:`emit`."""
        self._items.append(emit(event))

    def spawn_child(
        self, src: str, *, id: StrOrFn, input: ValueOrFn = None, system_id: str | None = None
    ) -> None:
        """Enqueue :func:`spawn_child`."""
        self._items.append(spawn_child(src, id=id, input=input, system_id=system_id))

    def stop_child(self, id: StrOrFn) -> None:
        """Enqueue :func:`stop_child`."""
        self._items.append(stop_child(id))

    def cancel(self, id: StrOrFn) -> None:
        """Enqueue :func:`cancel`."""
        self._items.append(cancel(id))

    def log(self, message: ValueOrFn = None) -> None:
        """Enqueue :func:`log`."""
        self._items.append(log(message))

    def check(self, guard: Any) -> bool:
        """Evaluate a guard now: a name in ``guards=``, a reference, :func:`state_in` or a callable.

        It sees the context as it was when the enqueue function was called.

        Raises:
            InvalidMachine: if the guard names no implementation.
        """
        return self._check(guard)

    def __repr__(self) -> str:
        return f"<ActionQueue {self._items!r}>"


EnqueueFn: TypeAlias = Callable[[ActionQueue, Context, Event], object] | Callable[..., object]
"""``fn(q, context, event, **params)`` for :func:`enqueue_actions`."""


ActionImpl: TypeAlias = (
    Assign
    | RaiseEvent
    | Emit
    | SendTo
    | SpawnChild
    | StopChild
    | Cancel
    | Log
    | EnqueueActions
    | Callable[[Context, Event], object]
    | Callable[..., object]
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

ActorImpl: TypeAlias = "Callable[[Any], Any] | Machine"
"""What ``actors=`` maps a name to: a child :class:`Machine` (for ``invoke`` and
:func:`spawn_child`), or ``fn(input)``, usually async, whose result is the
invoked actor's output."""


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


def _event_spec(event: EventOrFn | str) -> EventOrFn:
    return {"type": event} if isinstance(event, str) else event


def send_to(
    target: StrOrFn,
    event: EventOrFn | str,
    *,
    machine: str | None = None,
    delay: float | str | None = None,
    id: str | None = None,
) -> SendTo:
    """Build an action that sends an event to another actor, as xstate's ``sendTo``.

    The core resolves the target and the event and returns a
    :class:`SendEffect`; the shell delivers it after the macrostep. A target
    that is one of this actor's children goes to that child; any other
    string is for the shell to resolve: the in-process :class:`~durable_state.Actor`
    looks it up as a ``systemId`` in its actor tree, a persisted actor
    system as an actor id.

    Args:
        target: a child id, a ``systemId`` or an actor id, or
            ``fn(context, event, **params) -> str``.
        event: an event mapping (or a type string), or
            ``fn(context, event, **params) -> event``.
        machine: the receiver's machine id, for a persisted receiver that the
            message may create (the core only carries it).
        delay: milliseconds, or the name of an entry of ``delays=``: the send
            becomes a durable timer that sends when it is due.
        id: the id of the delayed send, for :func:`cancel`.

    Returns:
        An action.
    """
    return SendTo(target, _event_spec(event), machine=machine, delay=delay, id=id)


def send_parent(
    event: EventOrFn | str, *, delay: float | str | None = None, id: str | None = None
) -> SendTo:
    """Build an action that sends an event to this actor's parent, as xstate's ``sendParent``.

    Args:
        event: an event mapping (or a type string), or
            ``fn(context, event, **params) -> event``.
        delay: milliseconds or a delay name: a durable timer sends it later.
        id: the id of the delayed send, for :func:`cancel`.

    Returns:
        An action.
    """
    return SendTo(None, _event_spec(event), to_parent=True, delay=delay, id=id)


def spawn_child(
    src: str, *, id: StrOrFn, input: ValueOrFn = None, system_id: str | None = None
) -> SpawnChild:
    """Build an action that starts a child machine, as xstate's ``spawnChild``.

    The child lives until :func:`stop_child` stops it or its parent stops
    (reaches a final state, fails). Spawning an id that is already a child
    stops that child first.

    Args:
        src: a name in the machine's ``actors=`` whose value is a :class:`Machine`.
        id: the child's id among this actor's children, or
            ``fn(context, event, **params) -> str``.
        input: the child's input (given to its context function and its
            ``xstate.init`` event), or ``fn(context, event, **params) -> input``.
        system_id: registers the child under this name in its actor system.

    Returns:
        An action. An unknown ``src``, or one that is no machine, makes
        building the :class:`Machine` fail.
    """
    return SpawnChild(src, id=id, input=input, system_id=system_id)


def stop_child(id: StrOrFn) -> StopChild:
    """Build an action that stops a child actor, as xstate's ``stopChild``.

    Stopping an id that is no child does nothing.

    Args:
        id: the child's id, or ``fn(context, event, **params) -> str``.

    Returns:
        An action.
    """
    return StopChild(id)


def cancel(id: StrOrFn) -> Cancel:
    """Build an action that cancels a pending delayed event, as xstate's ``cancel``.

    It removes the durable timer of a delayed :func:`raise_event`,
    :func:`send_to` or :func:`send_parent` by its ``id``; an id with nothing
    pending is ignored.

    Args:
        id: the ``id`` given to the delayed action, or
            ``fn(context, event, **params) -> str``.

    Returns:
        An action.
    """
    return Cancel(id)


def log(message: ValueOrFn = None) -> Log:
    """Build an action that logs, as xstate's ``log``.

    The core returns a :class:`LogEffect`; the in-process actor logs it on
    the ``durable_state.actor`` logger (level INFO).

    Args:
        message: a value, or ``fn(context, event, **params) -> value``.
            Without one, ``{"context": context, "event": event}`` is logged.

    Returns:
        An action.
    """
    return Log(message)


def enqueue_actions(fn: EnqueueFn) -> EnqueueActions:
    """Build an action that decides at run time which actions run, as xstate's ``enqueueActions``.

    Args:
        fn: called as ``fn(q, context, event, **params)``; ``q(action)``
            enqueues an action (a name, a reference, a built-in or a
            callable), ``q.assign(...)``, ``q.raise_event(...)``,
            ``q.send_to(...)``, ``q.send_parent(...)``, ``q.emit(...)``,
            ``q.spawn_child(...)``, ``q.stop_child(...)``, ``q.cancel(...)`` and
            ``q.log(...)`` enqueue built-ins, and ``q.check(guard)`` evaluates
            a guard. The enqueued actions run in order after ``fn`` returns.
            Names are looked up when they are enqueued: an unknown one raises
            :class:`~durable_state.errors.InvalidMachine` then.

    Returns:
        An action.

    Example:
        >>> notify = enqueue_actions(
        ...     lambda q, context, event: q.send_parent({"type": "BIG"})
        ...     if q.check(lambda context, event: context["n"] > 10)
        ...     else None
        ... )
    """
    return EnqueueActions(fn)


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


@dataclass(frozen=True, slots=True)
class SendEffect:
    """Deliver ``event`` to another actor (from :func:`send_to` or :func:`send_parent`).

    Attributes:
        target: the resolved target: a child id when ``to_child``, ``""``
            when ``to_parent``, else a ``systemId`` or actor id for the shell
            to resolve.
        event: the event to deliver.
        to_parent: the event goes to this actor's parent.
        to_child: ``target`` is one of this actor's children, as xstate
            resolves it: a child running when the action ran, or one that
            the state being entered invokes (an entry action may send to it
            before it starts: this effect then comes before its
            :class:`SpawnEffect`, and the event is the child's first after
            its initial state).
        machine: the receiver's machine id, for a receiver the message may
            create (``send_to(..., machine=...)``).
    """

    target: str
    event: Event
    to_parent: bool
    to_child: bool
    machine: str | None


@dataclass(frozen=True, slots=True)
class SpawnEffect:
    """Start a child machine actor (an ``invoke`` of a machine, or :func:`spawn_child`).

    Attributes:
        child_id: its id among the parent's children.
        src: its name in the parent machine's ``actors=``.
        machine: the child's :class:`Machine`.
        input: its input (resolved by the core).
        system_id: the name to register it under in the actor system, if any.
    """

    child_id: str
    src: str
    machine: Machine
    input: Any
    system_id: str | None


@dataclass(frozen=True, slots=True)
class StopChildEffect:
    """Stop the child machine actor ``child_id`` (its invoking state was left, or :func:`stop_child`)."""

    child_id: str


@dataclass(frozen=True, slots=True)
class LogEffect:
    """Log ``message`` (from :func:`log`)."""

    message: Any


Effect: TypeAlias = (
    ActionEffect
    | EmitEffect
    | ScheduleTimerEffect
    | CancelTimerEffect
    | InvokeEffect
    | StopInvokeEffect
    | SendEffect
    | SpawnEffect
    | StopChildEffect
    | LogEffect
)


@dataclass(frozen=True, slots=True)
class Timer:
    """A pending delayed event, due at an absolute time (epoch ms).

    Attributes:
        id: the timer's id (an ``after`` event type, or the id of a delayed
            ``raise_event``/``send_to``/``send_parent``).
        event: the event delivered when it is due.
        due_ms: when it is due (epoch ms of the actor's clock).
        seq: its scheduling order, which breaks ties between equal due times.
        send: for a delayed send, the effect it produces when it fires
            (``None``: the event is raised to the machine itself).
    """

    id: str
    event: Event
    due_ms: float
    seq: int = field(default=0, compare=False)
    send: SendEffect | None = None
    _persisted: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    # Whether the persisted entry is known to hold only JSON values (it was
    # checked by a save, or read from JSON as it is): not checked again.
    _checked: bool = field(default=False, init=False, repr=False, compare=False)

    def persisted(self) -> dict[str, Any]:
        """The timer's entry in ``$durable.timers``, built once and shared: read-only.

        A delayed send also records where it goes: ``"send": {"to": target}``
        plus ``"parent": true``, ``"child": true`` and ``"machine"`` when they
        apply.
        """
        entry = self._persisted
        if entry is None:
            entry = {"id": self.id, "event": dict(self.event), "due": self.due_ms}
            send = self.send
            if send is not None:
                where: dict[str, Any] = {"to": send.target}
                if send.to_parent:
                    where["parent"] = True
                if send.to_child:
                    where["child"] = True
                if send.machine is not None:
                    where["machine"] = send.machine
                entry["send"] = where
            object.__setattr__(self, "_persisted", entry)
        return entry


_new_object = object.__new__
# The slots' own setters: they pass by the frozen class's __setattr__.
_set_id, _set_event, _set_due_ms, _set_seq, _set_send, _set_persisted, _set_checked = (
    Timer.__dict__[name].__set__
    for name in ("id", "event", "due_ms", "seq", "send", "_persisted", "_checked")
)


def restored_timer(
    timer_id: str, event: Event, due_ms: float, seq: int, entry: dict[str, Any] | None
) -> Timer:
    """A timer with no send, read back from its persisted ``entry`` (kept as its persisted form).

    The same object ``Timer(timer_id, event, due_ms, seq)`` makes, without
    the frozen dataclass's ``__init__``, whose ``object.__setattr__`` per
    field costs three times as much: restoring 10,000 pending timers
    makes 10,000 of them.

    Args:
        timer_id: the timer's id.
        event: the event it delivers.
        due_ms: when it is due (epoch ms).
        seq: its scheduling order.
        entry: its entry as read from JSON (saved again as it is), or ``None``.
    """
    timer: Timer = _new_object(Timer)
    _set_id(timer, timer_id)
    _set_event(timer, event)
    _set_due_ms(timer, due_ms)
    _set_seq(timer, seq)
    _set_send(timer, None)
    _set_persisted(timer, entry)
    _set_checked(timer, entry is not None)
    return timer
