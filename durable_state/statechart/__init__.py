"""The statechart core: pure, synchronous, xstate v5 compatible.

``Machine`` builds a statechart from an xstate v5 machine config and Python
implementations; ``Machine.transition(snapshot, event)`` returns the next
immutable :class:`Snapshot` and the effects for a shell to carry out. Nothing
here performs I/O or reads a clock.
"""

from ._builtins import ActionEffect as ActionEffect
from ._builtins import ActionImpl as ActionImpl
from ._builtins import ActionQueue as ActionQueue
from ._builtins import ActorImpl as ActorImpl
from ._builtins import Assign as Assign
from ._builtins import AssignFn as AssignFn
from ._builtins import AssignValue as AssignValue
from ._builtins import Cancel as Cancel
from ._builtins import CancelTimerEffect as CancelTimerEffect
from ._builtins import Context as Context
from ._builtins import DelayImpl as DelayImpl
from ._builtins import Effect as Effect
from ._builtins import Emit as Emit
from ._builtins import EmitEffect as EmitEffect
from ._builtins import EnqueueActions as EnqueueActions
from ._builtins import EnqueueFn as EnqueueFn
from ._builtins import Event as Event
from ._builtins import EventFn as EventFn
from ._builtins import GuardImpl as GuardImpl
from ._builtins import InvokeEffect as InvokeEffect
from ._builtins import Log as Log
from ._builtins import LogEffect as LogEffect
from ._builtins import RaiseEvent as RaiseEvent
from ._builtins import ScheduleTimerEffect as ScheduleTimerEffect
from ._builtins import SendEffect as SendEffect
from ._builtins import SendTo as SendTo
from ._builtins import SpawnChild as SpawnChild
from ._builtins import SpawnEffect as SpawnEffect
from ._builtins import StateIn as StateIn
from ._builtins import StopChild as StopChild
from ._builtins import StopChildEffect as StopChildEffect
from ._builtins import StopInvokeEffect as StopInvokeEffect
from ._builtins import Timer as Timer
from ._builtins import ValueOrFn as ValueOrFn
from ._builtins import assign as assign
from ._builtins import cancel as cancel
from ._builtins import emit as emit
from ._builtins import enqueue_actions as enqueue_actions
from ._builtins import log as log
from ._builtins import raise_event as raise_event
from ._builtins import send_parent as send_parent
from ._builtins import send_to as send_to
from ._builtins import spawn_child as spawn_child
from ._builtins import state_in as state_in
from ._builtins import stop_child as stop_child
from ._machine import DURABLE_KEY as DURABLE_KEY
from ._machine import Machine as Machine
from ._machine import to_event as to_event
from ._snapshot import ChildRecord as ChildRecord
from ._snapshot import ChildStatus as ChildStatus
from ._snapshot import Snapshot as Snapshot
from ._snapshot import Status as Status
from ._timers import TimerQueue as TimerQueue

__all__ = (
    "DURABLE_KEY",
    "ActionEffect",
    "ActionImpl",
    "ActionQueue",
    "ActorImpl",
    "Assign",
    "AssignFn",
    "AssignValue",
    "Cancel",
    "CancelTimerEffect",
    "ChildRecord",
    "ChildStatus",
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
    "Machine",
    "RaiseEvent",
    "ScheduleTimerEffect",
    "SendEffect",
    "SendTo",
    "Snapshot",
    "SpawnChild",
    "SpawnEffect",
    "StateIn",
    "Status",
    "StopChild",
    "StopChildEffect",
    "StopInvokeEffect",
    "Timer",
    "TimerQueue",
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
    "to_event",
)
