"""rusm.actors: a local actor runtime on asyncio (no network).

Processes with pids, mailboxes and selective receive, registered names,
links, monitors, exit signals, call/reply, supervisors and the GenServer
behaviour, with the BEAM's semantics (see docs/ACTORS.md for where Python
forces a difference).
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
from .gen_server import (
    CodeChangeFailed,
    From,
    GenServer,
    IdleTimeout,
    NoReply,
    Reply,
    ServerInfo,
    StartFailed,
    Stop,
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
    "CodeChangeFailed",
    "Down",
    "Exit",
    "From",
    "GenServer",
    "IdleTimeout",
    "NameTaken",
    "NoProc",
    "NoReply",
    "NotRegistered",
    "Pid",
    "Process",
    "ProcessExit",
    "ProcessInfo",
    "Ref",
    "Reply",
    "Runtime",
    "RuntimeClosed",
    "RuntimeConfig",
    "RuntimeStats",
    "RusmError",
    "ServerInfo",
    "StartFailed",
    "Stop",
    "Supervisor",
    "Timeout",
]
