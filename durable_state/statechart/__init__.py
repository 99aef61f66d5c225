"""The statechart core: pure, synchronous, xstate v5 compatible.

``Machine`` builds a statechart from an xstate v5 machine config and Python
implementations; ``Machine.transition(snapshot, event)`` returns the next
immutable :class:`Snapshot` and the effects for a shell to carry out. Nothing
here performs I/O or reads a clock.
"""

from ._builtins import ActionEffect as ActionEffect
from ._builtins import ActionImpl as ActionImpl
from ._builtins import ActorImpl as ActorImpl
from ._builtins import Assign as Assign
from ._builtins import AssignFn as AssignFn
from ._builtins import AssignValue as AssignValue
from ._builtins import CancelTimerEffect as CancelTimerEffect
from ._builtins import Context as Context
from ._builtins import DelayImpl as DelayImpl
from ._builtins import Effect as Effect
from ._builtins import Emit as Emit
from ._builtins import EmitEffect as EmitEffect
from ._builtins import Event as Event
from ._builtins import EventFn as EventFn
from ._builtins import GuardImpl as GuardImpl
from ._builtins import InvokeEffect as InvokeEffect
from ._builtins import RaiseEvent as RaiseEvent
from ._builtins import ScheduleTimerEffect as ScheduleTimerEffect
from ._builtins import StateIn as StateIn
from ._builtins import StopInvokeEffect as StopInvokeEffect
from ._builtins import Timer as Timer
from ._builtins import assign as assign
from ._builtins import emit as emit
from ._builtins import raise_event as raise_event
from ._builtins import state_in as state_in
from ._machine import DURABLE_KEY as DURABLE_KEY
from ._machine import Machine as Machine
from ._machine import to_event as to_event
from ._snapshot import ChildRecord as ChildRecord
from ._snapshot import Snapshot as Snapshot
from ._snapshot import Status as Status
from ._timers import TimerQueue as TimerQueue

__all__ = (
    "DURABLE_KEY",
    "ActionEffect",
    "ActionImpl",
    "ActorImpl",
    "Assign",
    "AssignFn",
    "AssignValue",
    "CancelTimerEffect",
    "ChildRecord",
    "Context",
    "DelayImpl",
    "Effect",
    "Emit",
    "EmitEffect",
    "Event",
    "EventFn",
    "GuardImpl",
    "InvokeEffect",
    "Machine",
    "RaiseEvent",
    "ScheduleTimerEffect",
    "Snapshot",
    "StateIn",
    "Status",
    "StopInvokeEffect",
    "Timer",
    "TimerQueue",
    "assign",
    "emit",
    "raise_event",
    "state_in",
    "to_event",
)
