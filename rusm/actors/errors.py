"""Errors raised by the actor runtime.

::

    RusmError
    ├── Timeout (also TimeoutError)       receive or call gave up
    ├── NoProc (also LookupError)         no such process or name
    ├── CallFailed                        the callee exited before replying
    ├── NameTaken (also ValueError)       a name is registered already
    ├── NotRegistered (also LookupError)  unregister of a free name
    └── RuntimeClosed (also RuntimeError) spawn on a closed runtime

:class:`ProcessExit` is not an error: a body raises it to exit with a chosen
reason, as Erlang's ``exit(Reason)``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CallFailed",
    "NameTaken",
    "NoProc",
    "NotRegistered",
    "ProcessExit",
    "RuntimeClosed",
    "RusmError",
    "Timeout",
]


class RusmError(Exception):
    """Raised when RUSM refuses or cannot complete an operation (root of all RUSM errors)."""


class Timeout(RusmError, TimeoutError):
    """Raised when ``receive`` or ``call`` reaches its timeout with nothing to return."""


class NoProc(RusmError, LookupError):
    """Raised when an operation needs a live process and the pid or name has none."""

    def __init__(self, target: Any) -> None:
        super().__init__(f"no process {target}")
        self.target = target


class CallFailed(RusmError):
    """Raised when the callee of ``call`` exited before it replied."""

    def __init__(self, target: Any, reason: Any) -> None:
        super().__init__(f"call to {target} failed: callee exited with reason {reason!r}")
        self.target = target
        self.reason = reason


class NameTaken(RusmError, ValueError):
    """Raised when registering a name that another process holds already."""

    def __init__(self, name: str, holder: Any) -> None:
        super().__init__(f"name {name!r} is already registered to {holder}")
        self.name = name
        self.holder = holder


class NotRegistered(RusmError, LookupError):
    """Raised when unregistering a name that nobody holds."""

    def __init__(self, name: str) -> None:
        super().__init__(f"name {name!r} is not registered")
        self.name = name


class RuntimeClosed(RusmError, RuntimeError):
    """Raised when spawning on a runtime that is closing or closed."""


class ProcessExit(BaseException):
    """Raised by a process body to exit with ``reason`` (Erlang's ``exit(Reason)``).

    It derives from BaseException so that ``except Exception`` in user code
    does not swallow it.
    """

    def __init__(self, reason: Any = "normal") -> None:
        super().__init__(reason)
        self.reason = reason
