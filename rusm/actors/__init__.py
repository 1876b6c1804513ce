"""rusm.actors: a local actor runtime on asyncio (no network).

Processes with pids, mailboxes and selective receive, registered names,
links, monitors, exit signals, call/reply and supervisors, with the BEAM's
semantics (see docs/ACTORS.md for where Python forces a difference).
"""

from .errors import (
    CallFailed,
    NameTaken,
    NoProc,
    NotRegistered,
    ProcessExit,
    RuntimeClosed,
    RusmError,
    Timeout,
)
from .info import ProcessInfo, RuntimeStats
from .messages import (
    KILL,
    KILLED,
    NOCONNECTION,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    Call,
    Down,
    Exit,
)
from .pid import Pid, Ref
from .process import Process
from .runtime import Runtime, RuntimeConfig
from .supervisor import ChildSpec, Supervisor

__all__ = [
    "KILL",
    "KILLED",
    "NOCONNECTION",
    "NOPROC",
    "NORMAL",
    "SHUTDOWN",
    "Call",
    "CallFailed",
    "ChildSpec",
    "Down",
    "Exit",
    "NameTaken",
    "NoProc",
    "NotRegistered",
    "Pid",
    "Process",
    "ProcessExit",
    "ProcessInfo",
    "Ref",
    "Runtime",
    "RuntimeClosed",
    "RuntimeConfig",
    "RuntimeStats",
    "RusmError",
    "Supervisor",
    "Timeout",
]
