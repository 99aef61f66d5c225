"""The Machine: an xstate v5 machine config plus Python implementations."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import replace
from typing import Any, cast

from .._json import check_json, find_unserializable
from ..errors import (
    InvalidEvent,
    InvalidMachine,
    MicrostepLimitExceeded,
    SnapshotIncompatible,
)
from ._algorithm import (
    ConfigInfo,
    EntryStep,
    MicrostepPlan,
    Selector,
    _neg_order,
    compute_microstep,
    remove_conflicting,
    run_selector,
    value_order,
)
from ._builtins import (
    ActionEffect,
    ActionImpl,
    ActionQueue,
    ActorImpl,
    CancelTimerEffect,
    DelayImpl,
    Effect,
    EmitEffect,
    GuardImpl,
    InvokeEffect,
    LogEffect,
    ScheduleTimerEffect,
    SendEffect,
    SendTo,
    SpawnChild,
    SpawnEffect,
    StopChildEffect,
    StopInvokeEffect,
    Timer,
    restored_timer,
)
from ._nodes import (
    COMPOUND,
    FINAL,
    HISTORY,
    K_ASSIGN,
    K_CANCEL,
    K_CUSTOM,
    K_EMIT,
    K_ENQUEUE,
    K_INVOKE,
    K_LOG,
    K_RAISE,
    K_SCHEDULE,
    K_SEND,
    K_SPAWN,
    K_STOP,
    K_STOP_CHILD,
    PARALLEL,
    ActionDef,
    EnqueueDef,
    StateNode,
    Transition,
    build_tree,
)
from ._snapshot import ChildRecord, ChildStatus, Snapshot, Status
from ._timers import EMPTY as EMPTY_TIMERS
from ._timers import TimerQueue

__all__ = ("DURABLE_KEY", "Machine")

DURABLE_KEY = "$durable"
"""The key of durable_state's own metadata in a persisted snapshot."""

_INIT = "xstate.init"
_STATUSES = frozenset({"active", "done", "error", "stopped"})
_CACHE_LIMIT = 4096
_UNSET: Any = object()
#: The statuses a child machine's record keeps (a stopped child is dropped).
_CHILD_STATUSES: dict[Any, ChildStatus] = {"active": "active", "done": "done", "error": "error"}

Migration = Callable[[dict[str, Any]], dict[str, Any]]


def to_event(event: Mapping[str, Any] | str) -> Mapping[str, Any]:
    """Normalise an event: a bare type string or a mapping with a string ``type``.

    Raises:
        InvalidEvent: for anything else, or the reserved wildcard type ``"*"``.
    """
    if type(event) is dict:
        # The common case, checked without the cost of an ABC isinstance.
        etype = event.get("type")
        if type(etype) is str and etype and etype != "*":
            return event
    if isinstance(event, str):
        if not event or event == "*":
            raise InvalidEvent(event, "an event type must be a non-empty string other than '*'")
        return {"type": event}
    if not isinstance(event, Mapping):
        raise InvalidEvent(event, "an event is a mapping with a 'type' or a type string")
    etype = event.get("type")
    if not isinstance(etype, str) or not etype:
        raise InvalidEvent(event, "the 'type' of an event must be a non-empty string")
    if etype == "*":
        raise InvalidEvent(event, "an event cannot have the wildcard type '*'")
    return event


class Machine:
    """A statechart built from an xstate v5 machine config.

    The machine is the pure core: it computes snapshots from snapshots and
    events and never performs I/O or reads a clock. Custom actions, emitted
    events, timers and invoked actors are returned as *effects* for an
    :class:`~durable_state.Actor` (or your own shell) to carry out.

    Args:
        config: the machine config, in the JSON shape of an xstate v5 config.
        actions: action implementations by name. A plain callable is a custom
            action, called as ``fn(context, event, **params)`` by the actor;
            :func:`assign`, :func:`raise_event` and :func:`emit` build
            built-in actions.
        guards: guard implementations by name, ``fn(context, event, **params)
            -> bool``, or :func:`state_in` guards.
        delays: named delays for ``after``: milliseconds, or
            ``fn(context, event) -> ms``.
        actors: what ``invoke`` and :func:`spawn_child` start, by name: a
            :class:`Machine` is a child machine (an actor of its own, run by
            the shell); any other value is an async callable for ``invoke``,
            called as ``await fn(input)``.
        version: the version of this machine, stored in every snapshot.
        migrations: ``{old_version: fn(persisted_dict) -> persisted_dict}``,
            applied in order to snapshots of older versions on restore.
        max_microsteps: how many microsteps one macrostep may take before
            :class:`MicrostepLimitExceeded` is raised (guards against
            ``always``/raise loops that never settle).

    Raises:
        InvalidMachine: when the config is invalid (with the path of the
            offending key) or an implementation it names is missing.

    Example:
        >>> m = Machine({"id": "light", "initial": "green",
        ...              "states": {"green": {"on": {"NEXT": "red"}}, "red": {}}})
        >>> s, _ = m.transition(m.initial_snapshot(), {"type": "NEXT"})
        >>> s.value
        'red'
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        actions: Mapping[str, ActionImpl] | None = None,
        guards: Mapping[str, GuardImpl] | None = None,
        delays: Mapping[str, DelayImpl] | None = None,
        actors: Mapping[str, ActorImpl] | None = None,
        version: int = 1,
        migrations: Mapping[int, Migration] | None = None,
        max_microsteps: int = 1000,
    ) -> None:
        if not isinstance(config, Mapping):
            raise InvalidMachine("", f"a machine config is a mapping, not {type(config).__name__}")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InvalidMachine("version", "the machine version is an integer >= 1")
        for label, given in (
            ("actions", actions),
            ("guards", guards),
            ("delays", delays),
            ("actors", actors),
            ("migrations", migrations),
        ):
            # Checked before copying: dict() of a list or an int would fail
            # with a TypeError/ValueError that names nothing.
            if given is not None and not isinstance(given, Mapping):
                raise InvalidMachine(label, "must be a mapping of names to implementations")
        self.config: Mapping[str, Any] = config
        self.actions: Mapping[str, ActionImpl] = dict(actions or {})
        self.guards: Mapping[str, GuardImpl] = dict(guards or {})
        self.delays: Mapping[str, DelayImpl] = dict(delays or {})
        self.actors: Mapping[str, ActorImpl] = dict(actors or {})
        for name, fn in self.actors.items():
            if not callable(fn) and not isinstance(fn, Machine):
                raise InvalidMachine(f"actors.{name}", "an actor is a Machine or an async callable")
        machine_srcs = frozenset(k for k, v in self.actors.items() if isinstance(v, Machine))
        self.version: int = version
        self.migrations: Mapping[int, Migration] = dict(migrations or {})
        for v, fn in self.migrations.items():
            if not isinstance(v, int) or not 1 <= v < version:
                raise InvalidMachine(
                    f"migrations.{v}", f"migrations are keyed by versions older than {version}"
                )
            if not callable(fn):
                raise InvalidMachine(f"migrations.{v}", "a migration must be callable")
        if max_microsteps < 1:
            raise InvalidMachine("max_microsteps", "must be at least 1")
        self.max_microsteps: int = max_microsteps
        root, id_map, nodes, compiler = build_tree(
            config,
            actions=self.actions,
            guards=self.guards,
            delays=self.delays,
            actors=self.actors,
            machine_srcs=machine_srcs,
        )
        # Compiles what enqueue_actions enqueues, when it runs.
        self._compiler = compiler
        self.root: StateNode = root
        self.id: str = root.id
        self._id_map = id_map
        self._nodes = nodes
        ctx = config.get("context")
        if ctx is not None and not isinstance(ctx, Mapping) and not callable(ctx):
            raise InvalidMachine("context", "context is a mapping or fn(input) -> mapping")
        if isinstance(ctx, Mapping):
            problem = find_unserializable(ctx, "context")
            if problem is not None:
                path, type_name, reason = problem
                raise InvalidMachine(path, reason or f"a {type_name} cannot be stored as JSON")
        self._configs = _Configs(root)
        # History targets, or a compound whose initial state is a history state,
        # make a microstep depend on the history value: such plans are not cached.
        self._history_initial = any(
            n.type == COMPOUND and n.initial is not None and n.initial.type == HISTORY
            for n in nodes
        )
        self._initial_transition = Transition(root, "", tuple(_initial_nodes(root)), None, (), True)

    def __repr__(self) -> str:
        return f"Machine(id={self.id!r}, version={self.version})"

    # ------------------------------------------------------------------ #
    # Public pure API
    # ------------------------------------------------------------------ #

    def get_state(self, state_id: str) -> StateNode:
        """The state node with this id (``"#id"`` or ``"id"``).

        Raises:
            KeyError: if there is no such state.
        """
        return self._id_map[state_id.removeprefix("#")]

    @property
    def state_ids(self) -> tuple[str, ...]:
        """The ids of all states, in document order."""
        return tuple(n.id for n in self._nodes)

    def initial_transition(
        self, input: Any = None, *, now_ms: float = 0.0
    ) -> tuple[Snapshot, list[Effect]]:
        """Enter the initial states: the snapshot and the effects of starting.

        Args:
            input: passed to a context function and carried by ``xstate.init``.
            now_ms: the time of the step (epoch ms): delayed transitions are
                due at ``now_ms + delay``. The core never reads a clock.

        Raises:
            MicrostepLimitExceeded: if the initial macrostep does not settle.
        """
        init_event = {"type": _INIT, "input": input}
        cfg_ctx = self.config.get("context")
        if callable(cfg_ctx):
            context = cfg_ctx(input)
            if not isinstance(context, Mapping):
                raise TypeError(
                    f"the context function of machine {self.id!r} returned "
                    f"{type(context).__name__}, not a mapping"
                )
        elif cfg_ctx is None:
            context = {}
        else:
            context = copy.deepcopy(dict(cfg_ctx))
        run = _Run(
            self,
            self._configs.intern(frozenset({self.root})),
            context,
            {},
            EMPTY_TIMERS,
            {},
            now_ms,
        )
        plan = compute_microstep(
            [self._initial_transition], run.info.nodes, {}, self.root, is_initial=True
        )
        run.execute(plan, init_event)
        run.settle(init_event)
        return run.snapshot(), run.effects

    def initial_snapshot(self, input: Any = None, *, now_ms: float = 0.0) -> Snapshot:
        """The initial snapshot (the effects of starting are discarded).

        Args:
            input: passed to a context function and carried by ``xstate.init``.
            now_ms: the time of the step (epoch ms), for delayed transitions.
        """
        return self.initial_transition(input, now_ms=now_ms)[0]

    def transition(
        self, snapshot: Snapshot, event: Mapping[str, Any] | str, *, now_ms: float = 0.0
    ) -> tuple[Snapshot, list[Effect]]:
        """Process one event to completion (a macrostep).

        Args:
            snapshot: the current snapshot (not modified).
            event: a mapping with a string ``"type"``, or a bare type string.
            now_ms: the time of the step (epoch ms), for delayed transitions.

        Returns:
            The next snapshot and the effects for the shell to carry out, in
            order. A snapshot that is not active is returned unchanged.

        Raises:
            InvalidEvent: if the event is malformed.
            MicrostepLimitExceeded: if the macrostep does not settle.
            Exception: whatever an assign, raise or guard implementation
                raises; the input snapshot stays valid.
        """
        # Both checks have a fast path for the common case (a dict event, a
        # snapshot of this machine): a shell calls this once per event.
        ev = to_event(event)
        self._own(snapshot)
        if snapshot.status != "active":
            return snapshot, []
        run = _Run.resume(snapshot, snapshot.timers, now_ms)
        run.macrostep(ev)
        return run.snapshot(snapshot), run.effects

    def fail(self, snapshot: Snapshot, error: BaseException) -> Snapshot:
        """The snapshot of a machine that failed outside any caller's ``transition``.

        A shell uses this when processing an event nobody waits for (a timer,
        the result of invoked work) raised: there is no caller to raise to, so,
        as in xstate, the machine's status becomes ``"error"``. Its timers and
        children are dropped (the shell disarms and cancels them); the state
        value, context and history stay as they were.

        Args:
            snapshot: the last good snapshot.
            error: what was raised; stored as the snapshot's ``error``.

        Returns:
            A snapshot with status ``"error"``.

        Raises:
            SnapshotIncompatible: if the snapshot belongs to another machine.
        """
        self._own(snapshot)
        return Snapshot(
            self,
            snapshot._info,
            snapshot.context,
            "error",
            snapshot.output,
            error,
            snapshot._history,
            EMPTY_TIMERS,
            {},
            snapshot._order,
            snapshot._checked,
        )

    def _failed_start(self, error: BaseException) -> Snapshot:
        """The snapshot of an actor whose initial step raised: status ``"error"``.

        A shell that starts a child machine nobody waits for uses it (the
        initial step never ran: no context, no timers, no children); the
        state value is the initial configuration's.
        """
        info = self._configs.intern(frozenset(_initial_nodes(self.root)))
        return Snapshot(self, info, {}, "error", None, error, {}, EMPTY_TIMERS, {})

    def fire_timer(
        self, snapshot: Snapshot, timer_id: str, *, now_ms: float = 0.0
    ) -> tuple[Snapshot, list[Effect]]:
        """Deliver the pending timer ``timer_id``: remove it and process its event.

        A timer that is no longer pending (cancelled, already fired) is ignored
        and the snapshot returned unchanged.

        Args:
            snapshot: the current snapshot.
            timer_id: the id of a timer in ``snapshot.timers``.
            now_ms: the time of the step (epoch ms).
        """
        self._own(snapshot)
        timer = snapshot.timers.get(timer_id)
        if timer is None or snapshot.status != "active":
            return snapshot, []
        run = _Run.resume(snapshot, snapshot.timers.cancel(timer_id), now_ms)
        send = timer.send
        if send is None:
            run.macrostep(timer.event)
            return run.snapshot(), run.effects
        # A delayed send: no step of this machine, only the message. A send
        # to a child goes to the child running now; one to a child that is
        # gone is dropped (xstate delivers it to the stopped actor, which
        # ignores it).
        effects: list[Effect] = []
        if not send.to_parent and send.target in snapshot.children:
            effects.append(send if send.to_child else replace(send, to_child=True))
        elif not send.to_child:
            effects.append(send)
        return run.snapshot(), effects

    def can(self, snapshot: Snapshot, event: Mapping[str, Any] | str) -> bool:
        """Whether ``event`` would select a transition that does something.

        Raises:
            InvalidEvent: if the event is malformed.
            SnapshotIncompatible: if the snapshot belongs to another machine.
        """
        ev = to_event(event)
        self._own(snapshot)
        if snapshot.status != "active":
            return False
        found = _Run.resume(snapshot, snapshot.timers, 0.0).select(ev)
        return any(t.targets is not None or t.actions for t in found)

    # ------------------------------------------------------------------ #
    # Persistence
    # ------------------------------------------------------------------ #

    def persisted_snapshot(self, snapshot: Snapshot) -> dict[str, Any]:
        """The JSON-able persisted form of a snapshot.

        The shape is xstate v5's ``getPersistedSnapshot()`` (``status``,
        ``value``, ``historyValue``, ``context``, ``children``, ``output``,
        ``error``) plus ``"$durable"``: the machine id and version, the
        pending timers as absolute due times, and the entry order when the
        state value cannot tell it.

        The result shares the context, the output and the timer entries with
        the snapshot instead of copying them: encode it, or treat it as
        read-only. (A snapshot and everything it holds are never changed in
        place; the core builds a new context on every ``assign``. Actions and
        guards must not change the context they are given either.)

        Raises:
            NotSerializable: if the context (or output) holds a value JSON
                cannot represent; the error names its path.
        """
        self._own(snapshot)
        error = snapshot.error
        if isinstance(error, BaseException):
            error = {"name": type(error).__name__, "message": str(error)}
        durable: dict[str, Any] = {"machine": self.id, "version": self.version}
        info = snapshot._info
        order = snapshot._order if snapshot._order is not None else info.atomics
        if order != info.restored_order:
            # Only when a restore could not tell it from the state value.
            durable["entered"] = [n.id for n in order]
        data = {
            "status": snapshot.status,
            "value": snapshot.value,  # a fresh copy
            "historyValue": {
                hid: [{"id": n.id} for n in nodes] for hid, nodes in snapshot._history.items()
            }
            if snapshot._history
            else {},
            # Shared with the snapshot, not copied: snapshots are immutable,
            # and so is what they hold (the core never changes a context in
            # place; it builds a new one).
            "context": snapshot.context,
            "children": {cid: self._persist_child(c) for cid, c in snapshot.children.items()}
            if snapshot.children
            else {},
            "output": snapshot.output,
            "error": error,
            DURABLE_KEY: durable,
        }
        # One walk over the document; paths are worked out only for a value
        # that fails ("context.items[2].price", "$durable.timers[0].event...").
        # The timers are walked apart: only those not known to be JSON. So
        # are the context values known to be JSON (see Snapshot._checked).
        context = snapshot.context
        known = snapshot._checked
        if known is None or type(context) is not dict:
            check_json(data, "")
        else:
            fresh = {k: v for k, v in context.items() if known.get(k, _UNSET) is not v}
            check_json({**data, "context": fresh}, "")
        if type(context) is dict and known is not context:
            object.__setattr__(snapshot, "_checked", context)
        timers = snapshot.timers
        entries = [t.persisted() for t in timers] if timers else []
        for i, t in enumerate(timers):
            if not t._checked:
                check_json(entries[i], f"{DURABLE_KEY}.timers[{i}]")
                object.__setattr__(t, "_checked", True)
        durable["timers"] = entries
        return data

    def _persist_child(self, child: ChildRecord) -> dict[str, Any]:
        """A child's entry in ``children``, as xstate's ``getPersistedSnapshot()`` writes it.

        A child machine's entry holds its input and, under ``snapshot``, the
        child's own persisted snapshot when this core knows one (a restored
        child); the in-process actor nests the running child's there. Work
        from an async callable keeps its input in ``snapshot.input``.
        """
        entry: dict[str, Any] = {"src": child.src}
        if child.system_id is not None:
            entry["systemId"] = child.system_id
        if isinstance(self.actors.get(child.src), Machine):
            entry["input"] = child.input
            entry["snapshot"] = (
                child.snapshot if child.snapshot is not None else {"status": child.status}
            )
        else:
            entry["snapshot"] = {"status": "active", "input": child.input}
        return entry

    def restore_snapshot(
        self, data: Mapping[str, Any], *, key: str | None = None, from_json: bool = False
    ) -> Snapshot:
        """Rebuild a snapshot from its persisted form, migrating older versions.

        Args:
            data: what :meth:`persisted_snapshot` returned (possibly from an
                older version of this machine).
            key: where the data came from, for error messages.
            from_json: ``data`` is what ``json.loads`` returned, so it holds
                JSON values only: its pending timers' entries are kept as
                they are and not checked again when the snapshot is
                persisted (the cost of a save then does not grow with the
                timers that were only carried along). Ignored when a
                migration ran (its functions may have put anything there).

        Raises:
            SnapshotIncompatible: another machine's snapshot, a newer version,
                a missing migration, a state the machine does not have, or a
                malformed field.
        """
        if not isinstance(data, Mapping):
            raise SnapshotIncompatible("a persisted snapshot is a mapping", key=key)
        meta = data.get(DURABLE_KEY)
        if not isinstance(meta, Mapping):
            raise SnapshotIncompatible(f"missing {DURABLE_KEY!r} metadata", key=key)
        if meta.get("machine") != self.id:
            raise SnapshotIncompatible(
                f"it belongs to machine {meta.get('machine')!r}, not {self.id!r}", key=key
            )
        version = meta.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SnapshotIncompatible(f"invalid version {version!r}", key=key)
        if version > self.version:
            raise SnapshotIncompatible(
                f"it was written by version {version} of the machine; this is version "
                f"{self.version} (newer snapshots are never downgraded)",
                key=key,
            )
        if version < self.version:
            data = self._migrate(dict(data), version, key)
            meta = data[DURABLE_KEY]
            from_json = False
        return self._restore(data, meta, key, from_json)

    def _migrate(self, data: dict[str, Any], version: int, key: str | None) -> dict[str, Any]:
        for v in range(version, self.version):
            fn = self.migrations.get(v)
            if fn is None:
                raise SnapshotIncompatible(
                    f"no migration from version {v} to {v + 1} (machine is version {self.version})",
                    key=key,
                )
            try:
                out = fn(copy.deepcopy(data))
            except Exception as exc:
                raise SnapshotIncompatible(
                    f"migration from version {v} failed: {exc!r}", key=key
                ) from exc
            if not isinstance(out, Mapping):
                raise SnapshotIncompatible(
                    f"migration from version {v} returned no mapping", key=key
                )
            data = dict(out)
            meta = dict(data.get(DURABLE_KEY) or {})
            meta["machine"] = self.id
            meta["version"] = v + 1
            data[DURABLE_KEY] = meta
        return data

    def _restore(
        self, data: Mapping[str, Any], meta: Mapping[str, Any], key: str | None, from_json: bool
    ) -> Snapshot:
        status = data.get("status", "active")
        if status not in _STATUSES:
            raise SnapshotIncompatible(f"unknown status {status!r}", key=key)
        context = data.get("context", {})
        if not isinstance(context, Mapping):
            raise SnapshotIncompatible("context is not a mapping", key=key)
        value = data.get("value")
        entered = meta.get("entered")
        configs = self._configs
        # The configuration and entry order a persisted state value stands
        # for depend on the machine alone: worked out once per value.
        cache_key = _restored_key(value, entered)
        found = configs.restored.get(cache_key) if cache_key is not None else None
        nodes = self._nodes_from_value(value, key) if found is None else None
        history: dict[str, tuple[StateNode, ...]] = {}
        raw_hist = data.get("historyValue") or {}
        if not isinstance(raw_hist, Mapping):
            raise SnapshotIncompatible("historyValue is not a mapping", key=key)
        for hid, entries in raw_hist.items():
            hnode = self._id_map.get(hid)
            if hnode is None or hnode.type != HISTORY:
                raise SnapshotIncompatible(f"no history state {hid!r}", key=key)
            if not isinstance(entries, list):
                raise SnapshotIncompatible(f"historyValue[{hid!r}] is not a list", key=key)
            recorded = []
            for e in entries:
                sid = e.get("id") if isinstance(e, Mapping) else None
                node = self._id_map.get(sid) if isinstance(sid, str) else None
                if node is None:
                    raise SnapshotIncompatible(
                        f"historyValue[{hid!r}] names unknown state {sid!r}", key=key
                    )
                recorded.append(node)
            history[hid] = tuple(recorded)
        timers: list[Timer] = []
        raw_timers = meta.get("timers") or []
        if not isinstance(raw_timers, list):
            raise SnapshotIncompatible("timers is not a list", key=key)
        set_attr = object.__setattr__
        for i, t in enumerate(raw_timers):
            if type(t) is dict and "send" not in t:
                # The common case (a plain timer read from JSON), checked
                # without ABC isinstance calls; anything else takes the
                # general path below.
                tid, ev, due = t.get("id"), t.get("event"), t.get("due")
                etype = ev.get("type") if type(ev) is dict else None
                if (
                    type(etype) is str
                    and etype
                    and etype != "*"
                    and type(tid) is str
                    and (type(due) is float or type(due) is int)
                ):
                    # With its persisted entry, as read: saved again as it is.
                    timers.append(
                        restored_timer(
                            tid, cast("dict[str, Any]", ev), float(due), i, t if from_json else None
                        )
                    )
                    continue
            if (
                not isinstance(t, Mapping)
                or not isinstance(t.get("id"), str)
                or not isinstance(t.get("event"), Mapping)
                or not isinstance(t.get("due"), int | float)
                or isinstance(t.get("due"), bool)
            ):
                raise SnapshotIncompatible(f"timer {i} is malformed: {t!r}", key=key)
            try:
                ev = to_event(t["event"])
            except InvalidEvent as exc:
                raise SnapshotIncompatible(f"timer {i}: {exc}", key=key) from exc
            send = None
            where = t.get("send")
            if where is not None:
                send = _restore_send(where, ev, i, key)
            timer = Timer(t["id"], ev, float(t["due"]), i, send)
            if from_json and type(t) is dict:
                set_attr(timer, "_persisted", t)
                set_attr(timer, "_checked", True)
            timers.append(timer)
        try:
            queue = TimerQueue.of(timers) if timers else EMPTY_TIMERS
        except ValueError as exc:
            raise SnapshotIncompatible(f"timers: {exc}", key=key) from None
        children: dict[str, ChildRecord] = {}
        raw_children = data.get("children") or {}
        if not isinstance(raw_children, Mapping):
            raise SnapshotIncompatible("children is not a mapping", key=key)
        for cid, c in raw_children.items():
            src = c.get("src") if isinstance(c, Mapping) else None
            if not isinstance(src, str) or src not in self.actors:
                raise SnapshotIncompatible(f"child {cid!r} has unknown source {src!r}", key=key)
            assert isinstance(c, Mapping)
            snap = c.get("snapshot")
            raw_status = snap.get("status", "active") if isinstance(snap, Mapping) else "active"
            is_machine = isinstance(self.actors[src], Machine)
            child_status = _CHILD_STATUSES.get(raw_status) if is_machine else None
            if raw_status != "active" and child_status is None:
                continue  # finished work is not restarted (stopped machines neither)
            child_status = child_status or "active"
            system_id = c.get("systemId")
            if system_id is not None and (not isinstance(system_id, str) or not system_id):
                raise SnapshotIncompatible(f"child {cid!r} has a malformed systemId", key=key)
            # A child machine's own persisted snapshot (it has a state value),
            # for the shell to restore the child from.
            nested: Mapping[str, Any] | None = None
            if is_machine and isinstance(snap, Mapping) and "value" in snap:
                nested = snap
            child_input = (
                c["input"]
                if "input" in c
                else (snap.get("input") if isinstance(snap, Mapping) else None)
            )
            children[cid] = ChildRecord(src, child_input, system_id, nested, child_status)
        if found is None:
            assert nodes is not None
            info = configs.intern(nodes)
            found = (info, self._restore_order(value, info, entered, key))
            if cache_key is not None:
                if len(configs.restored) >= _CACHE_LIMIT:
                    configs.restored.clear()
                configs.restored[cache_key] = found
        info, order = found
        return Snapshot(
            self,
            info,
            dict(context),
            status,
            data.get("output"),
            data.get("error"),
            history,
            queue,
            children,
            order,
        )

    def _restore_order(
        self, value: Any, info: ConfigInfo, entered: Any, key: str | None
    ) -> tuple[StateNode, ...] | None:
        """The entry order of a restored snapshot (None: the document order).

        ``$durable.entered`` records it when it was not the document order.
        A snapshot without it (an older one, or one written by xstate) gets
        the order xstate gives a restored snapshot: the order in which the
        persisted state value names the atomic states. Ids that are unknown
        or not active are skipped, and active states it misses follow in
        that order, so that a migrated snapshot still restores.
        """
        active = info.nodes
        named: list[StateNode] = []
        if entered is not None:
            if not isinstance(entered, list) or not all(isinstance(i, str) for i in entered):
                raise SnapshotIncompatible("$durable.entered is not a list of state ids", key=key)
            for sid in entered:
                node = self._id_map.get(sid)
                if node is not None and node.is_atomic and node in active:
                    named.append(node)
        named.extend(value_order(self.root, value))
        order = tuple(n for n in dict.fromkeys(named) if n.is_atomic and n in active)
        if len(order) != len(info.atomics):
            present = set(order)
            order += tuple(n for n in info.atomics if n not in present)
        return None if order == info.atomics else order

    def _nodes_from_value(self, value: Any, key: str | None) -> frozenset[StateNode]:
        nodes: set[StateNode] = {self.root}

        def walk(node: StateNode, v: Any, path: str) -> None:
            if isinstance(v, str):
                child = node.states.get(v)
                if child is None or child.type == HISTORY:
                    raise SnapshotIncompatible(
                        f"state {_dot(path, v)!r} does not exist in machine {self.id!r}", key=key
                    )
                nodes.add(child)
                fill(child)
                return
            if not isinstance(v, Mapping):
                raise SnapshotIncompatible(
                    f"malformed state value at {path or '(root)'!r}", key=key
                )
            if not v:
                fill(node)
                return
            if node.type == COMPOUND and len(v) != 1:
                raise SnapshotIncompatible(
                    f"compound state {path or '(root)'!r} has {len(v)} active children", key=key
                )
            for k, sub in v.items():
                child = node.states.get(k)
                if child is None or child.type == HISTORY:
                    raise SnapshotIncompatible(
                        f"state {_dot(path, k)!r} does not exist in machine {self.id!r}", key=key
                    )
                nodes.add(child)
                walk(child, sub, _dot(path, k))
            if node.type == PARALLEL:
                for child in node.children:
                    if child not in nodes:
                        nodes.add(child)
                        fill(child)

        def fill(node: StateNode) -> None:
            # A partial value enters the initial states below it (xstate's resolveState).
            if node.type == COMPOUND:
                if not any(c in nodes for c in node.children):
                    init = node.initial
                    assert init is not None
                    nodes.update(_initial_nodes(init))
            elif node.type == PARALLEL:
                for child in node.children:
                    if child not in nodes:
                        nodes.update(_initial_nodes(child))

        if value is None:
            raise SnapshotIncompatible("missing state value", key=key)
        if isinstance(value, str) and self.root.type != COMPOUND:
            raise SnapshotIncompatible(f"state {value!r} does not exist", key=key)
        walk(self.root, value, "")
        return frozenset(nodes)

    # ------------------------------------------------------------------ #
    # Internals
    # ------------------------------------------------------------------ #

    def _own(self, snapshot: Snapshot) -> None:
        if type(snapshot) is Snapshot and snapshot.machine is self:
            return
        if not isinstance(snapshot, Snapshot):
            raise TypeError(f"expected a Snapshot, got {type(snapshot).__name__}")
        if snapshot.machine is not self:
            raise SnapshotIncompatible(
                f"snapshot of machine {snapshot.machine.id!r} used with machine {self.id!r}; "
                "persist it and restore it into this machine instead"
            )


class _Configs:
    """The interned configurations of one machine, each with what is cached about it.

    Interning makes a configuration reached again the same :class:`ConfigInfo`,
    so its compiled selections and microstep plans are found by identity.
    """

    __slots__ = ("restored", "root", "table")

    def __init__(self, root: StateNode) -> None:
        self.root = root
        self.table: dict[frozenset[StateNode], ConfigInfo] = {}
        # Persisted state values (and entry orders) restored before, by
        # _restored_key: their configuration and entry order.
        self.restored: dict[Hashable, tuple[ConfigInfo, tuple[StateNode, ...] | None]] = {}

    def intern(self, nodes: frozenset[StateNode]) -> ConfigInfo:
        info = self.table.get(nodes)
        if info is None:
            if len(self.table) >= _CACHE_LIMIT:
                self.table.clear()
                self.restored.clear()
            info = ConfigInfo(nodes, self.root)
            self.table[nodes] = info
        return info


class _Run:
    """The mutable working state of one macrostep; becomes a Snapshot at the end."""

    __slots__ = (
        "changed",
        "checked",
        "children",
        "context",
        "deferred",
        "effects",
        "error",
        "history",
        "info",
        "machine",
        "micro_nodes",
        "now_ms",
        "order",
        "output",
        "queue",
        "status",
        "timers",
    )

    def __init__(
        self,
        machine: Machine,
        info: ConfigInfo,
        context: Mapping[str, Any],
        history: Mapping[str, tuple[StateNode, ...]],
        timers: TimerQueue,
        children: Mapping[str, ChildRecord],
        now_ms: float,
        order: tuple[StateNode, ...] | None = None,
    ) -> None:
        self.machine = machine
        self.info = info
        self.order = order
        self.context = context
        self.history = history
        self.timers = timers
        self.children = children
        self.now_ms = now_ms
        self.status: Status = "active"
        self.output: Any = None
        self.error: Any = None
        self.effects: list[Effect] = []
        self.queue: deque[Mapping[str, Any]] = deque()
        self.changed = False
        # While the entry actions of a state that invokes children run: the
        # ids of those children, which a send may already name although they
        # start after the entry actions (xstate's deferred actor ids).
        self.deferred: frozenset[str] = frozenset()
        # The configuration when the current microstep began: what q.check
        # of enqueue_actions sees while the microstep's actions run (xstate
        # updates a snapshot's states only at the end of the microstep).
        self.micro_nodes: frozenset[StateNode] = info.nodes
        # Snapshot._checked, carried along a snapshot's line.
        self.checked: Mapping[str, Any] | None = None

    @classmethod
    def resume(cls, snapshot: Snapshot, timers: TimerQueue, now_ms: float) -> _Run:
        """A run that continues from ``snapshot`` (with ``timers`` pending)."""
        run = cls(
            snapshot.machine,
            snapshot._info,
            snapshot.context,
            snapshot._history,
            timers,
            snapshot.children,
            now_ms,
            snapshot._order,
        )
        run.checked = snapshot._checked
        return run

    def snapshot(self, previous: Snapshot | None = None) -> Snapshot:
        """The snapshot reached; ``previous`` itself when nothing changed."""
        if (
            previous is not None
            and self.info is previous._info
            and self.context is previous.context
            and self.history is previous._history
            and self.timers is previous.timers
            and self.children is previous.children
            and self.order is previous._order
            and self.status == previous.status
        ):
            return previous
        return Snapshot(
            self.machine,
            self.info,
            self.context,
            self.status,
            self.output,
            self.error,
            self.history,
            self.timers,
            self.children,
            self.order,
            self.checked,
        )

    # -- selection and planning ---------------------------------------- #

    def select(self, event: Mapping[str, Any]) -> tuple[Transition, ...]:
        """The transitions ``event`` enables in the current configuration."""
        info = self.info
        etype = event["type"]
        try:
            sel = info.selection[etype]
        except KeyError:
            if len(info.selection) >= _CACHE_LIMIT:
                info.selection.clear()
            sel = info.selection[etype] = info.compile_selection(self.machine.root, etype)
        if sel is None:
            return ()
        if isinstance(sel, Selector):
            return run_selector(sel, self.context, event, info.nodes)
        return sel

    def plan(self, transitions: tuple[Transition, ...]) -> MicrostepPlan:
        """The microstep that takes ``transitions`` (cached when history plays no part)."""
        info = self.info
        plan = info.micro.get(transitions)
        if plan is not None:
            return plan  # only history-independent plans are ever cached
        m = self.machine
        cacheable = not m._history_initial and not any(t.has_history_target for t in transitions)
        plan = compute_microstep(transitions, info.nodes, self.history, m.root)
        if cacheable:
            if len(info.micro) >= _CACHE_LIMIT:
                info.micro.clear()
            info.micro[transitions] = plan
        return plan

    # -- macrostep ------------------------------------------------------ #

    def macrostep(self, event: Mapping[str, Any]) -> None:
        etype = event["type"]
        if self.children and etype.startswith(("xstate.done.actor.", "xstate.error.actor.")):
            # A child that finished is no longer running: it must not be
            # restarted when the snapshot is restored. A child machine stays
            # listed, finished, until its state exits or it is stopped (as in
            # xstate: a send to it is dropped, not an error); invoked async
            # work leaves at once.
            actor_id = event.get("actorId")
            record = self.children.get(actor_id) if isinstance(actor_id, str) else None
            if record is not None and record.status == "active":
                assert isinstance(actor_id, str)
                children = dict(self.children)
                if isinstance(self.machine.actors.get(record.src), Machine):
                    status: ChildStatus = "done" if etype.startswith("xstate.done.") else "error"
                    children[actor_id] = record.finished(status)
                else:
                    del children[actor_id]
                self.children = children
        transitions = self.select(event)
        if not transitions and etype.startswith("xstate.error.actor"):
            self.status = "error"
            self.error = event.get("error")
            self._halt()
            return
        if transitions:
            self.execute(self.plan(transitions), event)
        if self.queue or self.info.has_always or self.status != "active":
            self.settle(event)

    def settle(self, event: Mapping[str, Any]) -> None:
        """Run eventless transitions and the internal queue until at rest."""
        m = self.machine
        select_eventless = True
        steps = 0
        limit = m.max_microsteps
        current = event
        while self.status == "active":
            enabled: tuple[Transition, ...] = ()
            if select_eventless and self.info.has_always:
                enabled = self._eventless(current)
            from_eventless = bool(enabled)
            if not enabled:
                if not self.queue:
                    break
                current = self.queue.popleft()
                enabled = self.select(current)
            steps += 1
            if steps > limit:
                raise MicrostepLimitExceeded(limit, str(event["type"]))
            self.changed = False
            if enabled:
                self.execute(self.plan(enabled), current)
            # xstate re-selects eventless transitions unless an eventless
            # microstep left the snapshot exactly as it was.
            select_eventless = self.changed or not from_eventless
        if self.status != "active":
            self._halt()

    def _eventless(self, event: Mapping[str, Any]) -> tuple[Transition, ...]:
        ctx = self.context
        nodes = self.info.nodes
        found: dict[Transition, None] = {}
        # Atomic states in entry order, each with its chain of ancestors that
        # have eventless transitions; the first enabled one per chain (xstate).
        order = self.order
        chains = (
            self.info.always_chains
            if order is None
            else [a.always_chain for a in order if a.always_chain]
        )
        for chain in chains:
            done = False
            for s in chain:
                for t in s.always:
                    g = t.guard
                    if g is None or g(ctx, event, nodes):
                        found[t] = None
                        done = True
                        break
                if done:
                    break
        if not found:
            return ()
        enabled = list(found)
        if len(enabled) > 1:
            enabled = remove_conflicting(enabled, nodes, self.history, self.machine.root)
        return tuple(enabled)

    # -- microstep ------------------------------------------------------ #

    def execute(self, plan: MicrostepPlan, event: Mapping[str, Any]) -> None:
        self.micro_nodes = self.info.nodes
        if plan.history_changed:
            merged = dict(self.history)
            merged.update(plan.history_records)
            self.history = merged
            self.changed = True
        for node in plan.exits:
            if node.exit:
                self.run_actions(node.exit, event)
        for t in plan.transitions:
            if t.actions:
                self.run_actions(t.actions, event)
        if plan.changes_order:
            order = self.order
            self.order = plan.order_from_document if order is None else plan.reorder(order)
        if plan.nodes_changed:
            self.info = self.machine._configs.intern(plan.next_nodes)
            self.changed = True
        for step in plan.entries:
            node = step.node
            if node.invoke:
                self.deferred = frozenset(inv.id for inv in node.invoke)
            if node.entry:
                self.run_actions(node.entry, event)
            if step.default and node.initial_actions:
                self.run_actions(node.initial_actions, event)
            if node.invoke:
                self.deferred = frozenset()
            if node.type == FINAL:
                self._complete(step, event)
        if self.status == "done":
            # xstate runs the exit actions of every active state on completion.
            for node in sorted(self.info.nodes, key=_neg_order):
                if node.exit:
                    self.run_actions(node.exit, event)

    def _complete(self, step: EntryStep, event: Mapping[str, Any]) -> None:
        node = step.node
        if step.compound_done is not None:
            out = _resolve_output(node.output, self.context, event)
            self.queue.append({"type": f"xstate.done.state.{step.compound_done.id}", "output": out})
        for p in step.parallel_done:
            self.queue.append({"type": f"xstate.done.state.{p.id}", "output": None})
        completion = step.root_completion
        if completion is not None:
            root = self.machine.root
            output = None
            if root.output is not None:
                inner = None
                if completion.output is not None and completion.parent is not None:
                    inner = _resolve_output(completion.output, self.context, event)
                done_event = {"type": f"xstate.done.state.{completion.id}", "output": inner}
                output = _resolve_output(root.output, self.context, done_event)
            self.status = "done"
            self.output = output
            self.changed = True

    def run_actions(self, actions: tuple[ActionDef, ...], event: Mapping[str, Any]) -> None:
        for a in actions:
            kind = a.kind
            if kind == K_ASSIGN:
                fn = a.fn
                if callable(fn):
                    update = (
                        fn(self.context, event, **a.params) if a.params else fn(self.context, event)
                    )
                else:
                    update = fn
                if type(update) is not dict and not isinstance(update, Mapping):
                    raise TypeError(
                        f"an assign function must return a mapping, not {type(update).__name__}"
                    )
                ctx = dict(self.context)
                ctx.update(update)
                self.context = ctx
                self.changed = True
            elif kind == K_CUSTOM:
                self.effects.append(ActionEffect(a.name, a.fn, self.context, event, a.params))
            elif kind == K_RAISE:
                raised = self._event_of(a, event)
                if a.delay is None:
                    self.queue.append(raised)
                else:
                    self._schedule(a.id or raised["type"], raised, a.delay, event)
            elif kind == K_EMIT:
                self.effects.append(EmitEffect(self._event_of(a, event)))
            elif kind == K_SCHEDULE:
                self._schedule(a.id or "", a.fn, a.delay, event)
            elif kind == K_CANCEL:
                fn = a.fn
                if fn is None:
                    self._cancel(a.id or "")
                else:
                    self._cancel(_text(self._call(fn, a, event), "cancel's id"))
            elif kind == K_INVOKE:
                inv = a.fn
                raw_input = inv.input
                value = (
                    raw_input(self.context, event)
                    if callable(raw_input)
                    else copy.deepcopy(raw_input)
                )
                if inv.machine:
                    self._spawn(inv.id, inv.src, value, inv.system_id)
                else:
                    self._set_child(inv.id, ChildRecord(inv.src, value, inv.system_id))
                    self.effects.append(InvokeEffect(inv.id, inv.src, value))
            elif kind == K_STOP:
                if a.id is not None and a.id in self.children:
                    self._stop_child(a.id)
            elif kind == K_SEND:
                self._send(a, event)
            elif kind == K_SPAWN:
                spec: SpawnChild = a.fn
                cid = spec.id
                if not isinstance(cid, str):
                    cid = _text(self._call(cid, a, event), "spawn_child's id")
                raw = spec.input
                value = self._call(raw, a, event) if callable(raw) else copy.deepcopy(raw)
                self._spawn(cid, spec.src, value, spec.system_id)
            elif kind == K_STOP_CHILD:
                cid = a.fn
                if not isinstance(cid, str):
                    cid = _text(self._call(cid, a, event), "stop_child's id")
                if cid in self.children:
                    self._stop_child(cid)
            elif kind == K_LOG:
                msg = a.fn
                if msg is None:
                    msg = {"context": self.context, "event": event}
                elif callable(msg):
                    msg = self._call(msg, a, event)
                self.effects.append(LogEffect(msg))
            elif kind == K_ENQUEUE:
                self._enqueue(a, event)

    def _call(self, fn: Any, a: ActionDef, event: Mapping[str, Any]) -> Any:
        """Call a helper's function as ``fn(context, event, **params)``."""
        return fn(self.context, event, **a.params) if a.params else fn(self.context, event)

    def _event_of(self, a: ActionDef, event: Mapping[str, Any]) -> Mapping[str, Any]:
        spec = a.fn
        if callable(spec):
            spec = spec(self.context, event, **a.params) if a.params else spec(self.context, event)
        return to_event(spec)

    # -- children and messages ------------------------------------------ #

    def _set_child(self, cid: str, record: ChildRecord) -> None:
        children = dict(self.children)
        children[cid] = record
        self.children = children
        self.changed = True

    def _spawn(self, cid: str, src: str, value: Any, system_id: str | None) -> None:
        """Start child machine ``cid``; one already running under that id is stopped first."""
        if cid in self.children:
            self._stop_child(cid)
        self._set_child(cid, ChildRecord(src, value, system_id))
        child_machine = self.machine.actors[src]
        assert isinstance(child_machine, Machine)
        self.effects.append(SpawnEffect(cid, src, child_machine, value, system_id))

    def _stop_child(self, cid: str) -> None:
        record = self.children[cid]
        children = dict(self.children)
        del children[cid]
        self.children = children
        self.changed = True
        self.effects.append(self._stop_effect(cid, record))

    def _stop_effect(self, cid: str, record: ChildRecord) -> Effect:
        if isinstance(self.machine.actors.get(record.src), Machine):
            return StopChildEffect(cid)
        return StopInvokeEffect(cid)

    def _send(self, a: ActionDef, event: Mapping[str, Any]) -> None:
        spec: SendTo = a.fn
        if spec.to_parent:
            target = ""
        else:
            raw = spec.target
            target = raw if isinstance(raw, str) else _text(self._call(raw, a, event), "target")
        ev = self._event_of_spec(spec.event, a, event)
        # As xstate resolves it: a child running now, or one the state being
        # entered invokes (its entry actions run before it starts).
        to_child = not spec.to_parent and (target in self.children or target in self.deferred)
        eff = SendEffect(target, ev, spec.to_parent, to_child, spec.machine)
        if a.delay is not None:
            timer_id = a.id if a.id is not None else self._fresh_timer_id()
            self._schedule(timer_id, ev, a.delay, event, eff)
            return
        self.effects.append(eff)

    def _event_of_spec(
        self, spec: Any, a: ActionDef, event: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        if callable(spec):
            spec = self._call(spec, a, event)
        return to_event(spec)

    def _fresh_timer_id(self) -> str:
        """An id for a delayed send without one: unique among the pending timers."""
        n = len(self.timers)
        while self.timers.get(f"xstate.send.{n}") is not None:
            n += 1
        return f"xstate.send.{n}"

    def _enqueue(self, a: ActionDef, event: Mapping[str, Any]) -> None:
        spec: EnqueueDef = a.fn
        compiler = self.machine._compiler
        where = spec.where
        # q.check sees the context as it is when the function runs, and the
        # states active when the microstep began (as xstate).
        context = self.context
        nodes = self.micro_nodes

        def check(guard: Any) -> bool:
            return bool(compiler.guard(guard, f"{where} (q.check)")(context, event, nodes))

        q = ActionQueue(check)
        fn = spec.fn
        if a.params:
            fn(q, context, event, **a.params)
        else:
            fn(q, context, event)
        if q.items:
            actions = tuple(
                compiler.action(item, f"{where} (enqueued action {i})")
                for i, item in enumerate(q.items)
            )
            self.run_actions(actions, event)

    def _schedule(
        self,
        timer_id: str,
        event: Mapping[str, Any],
        delay: Any,
        current: Mapping[str, Any],
        send: SendEffect | None = None,
    ) -> None:
        if isinstance(delay, str):
            ref = self.machine.delays[delay]
            delay = ref(self.context, current) if callable(ref) else ref
            if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
                raise TypeError(f"delay function returned {delay!r}, not a number of ms >= 0")
        due = self.now_ms + float(delay)
        self.timers, replaced = self.timers.schedule(timer_id, event, due, send=send)
        if replaced:
            self.effects.append(CancelTimerEffect(timer_id))
        self.effects.append(ScheduleTimerEffect(timer_id, event, due))

    def _cancel(self, timer_id: str) -> None:
        remaining = self.timers.cancel(timer_id)
        if remaining is not self.timers:
            self.timers = remaining
            self.effects.append(CancelTimerEffect(timer_id))

    def _halt(self) -> None:
        """The machine stopped running (done or error): nothing may outlive it."""
        self._stop_children()
        self._cancel_timers()

    def _stop_children(self) -> None:
        if self.children:
            for cid, record in self.children.items():
                self.effects.append(self._stop_effect(cid, record))
            self.children = {}

    def _cancel_timers(self) -> None:
        if self.timers:
            for t in self.timers:
                self.effects.append(CancelTimerEffect(t.id))
            self.timers = EMPTY_TIMERS


def _restored_key(value: Any, entered: Any) -> Hashable | None:
    """A key for a persisted state value and entry order, or ``None`` for an unusual one.

    Keys keep the order of a value's keys, which the entry order of a
    restored snapshot depends on.
    """
    if entered is None:
        tail: tuple[str, ...] | None = None
    elif type(entered) is list and all(type(i) is str for i in entered):
        tail = tuple(entered)
    else:
        return None
    if type(value) is str:
        return (value, tail)
    if type(value) is dict:
        frozen = _frozen_value(value)
        return None if frozen is None else (frozen, tail)
    return None


def _frozen_value(value: dict[Any, Any]) -> tuple[Any, ...] | None:
    items: list[tuple[str, Any]] = []
    for k, v in value.items():
        if type(k) is not str:
            return None
        if type(v) is str:
            items.append((k, v))
        elif type(v) is dict:
            sub = _frozen_value(v)
            if sub is None:
                return None
            items.append((k, sub))
        else:
            return None
    return tuple(items)


def _restore_send(where: Any, event: Mapping[str, Any], index: int, key: str | None) -> SendEffect:
    """The send a persisted delayed-send timer produces (its ``"send"`` entry)."""
    if not isinstance(where, Mapping):
        raise SnapshotIncompatible(f"timer {index}: 'send' is not a mapping", key=key)
    target = where.get("to", "")
    to_parent = where.get("parent", False)
    to_child = where.get("child", False)
    machine = where.get("machine")
    if (
        not isinstance(target, str)
        or not isinstance(to_parent, bool)
        or not isinstance(to_child, bool)
        or not (machine is None or isinstance(machine, str))
        or (not target and not to_parent)
    ):
        raise SnapshotIncompatible(f"timer {index}: malformed 'send': {where!r}", key=key)
    return SendEffect(target, event, to_parent, to_child, machine)


def _text(value: Any, what: str) -> str:
    """A helper function's result that must be a non-empty string (an id, a target)."""
    if not isinstance(value, str) or not value:
        raise TypeError(f"the {what} function returned {value!r}, not a non-empty string")
    return value


def _resolve_output(mapper: Any, context: Mapping[str, Any], event: Mapping[str, Any]) -> Any:
    if callable(mapper):
        return mapper(context, event)
    return copy.deepcopy(mapper)


def _initial_nodes(node: StateNode) -> list[StateNode]:
    """``node`` and the states its default entry activates (xstate getInitialStateNodes)."""
    out: list[StateNode] = []
    seen: set[StateNode] = set()

    def walk(n: StateNode) -> None:
        if n in seen:
            return
        seen.add(n)
        out.append(n)
        if n.type == COMPOUND:
            assert n.initial is not None
            walk(n.initial)
        elif n.type == PARALLEL:
            for c in n.children:
                walk(c)

    walk(node)
    return out


def _dot(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
