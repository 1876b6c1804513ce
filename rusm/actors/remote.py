"""The seam between the runtime and a cluster layer.

The runtime knows nothing of networks. A cluster layer (``rusm.net``)
implements :class:`RemoteRouter` and installs it with
``Runtime.set_router``; the runtime calls it for anything addressed to a
process of another node, with the local process (or ``<node.0>``) as ``src``.
Every call keeps its (src, dst) pair's order: the router must deliver the
signals of one pair in the order it is given them. ``exited`` reports a
local process's end after its last signal (its exit and ``Down`` signals),
so the router can forget the state it kept for its pairs. In the other direction
the cluster layer calls the runtime's ``remote_*`` entry points.

A remote destination is a :class:`Pid` of another node or a
``(name, node)`` tuple: a name registered on that node.
"""

from __future__ import annotations

from typing import Any, Protocol

from .pid import Pid, Ref

__all__ = ["RemoteDest", "RemoteRouter"]

RemoteDest = Pid | tuple[str, str]


class RemoteRouter(Protocol):
    def send(self, src: Pid, dst: RemoteDest, msg: Any) -> None: ...

    def call(self, src: Pid, dst: RemoteDest, ref: Ref, request: Any) -> None: ...

    def reply(self, src: Pid, dst: Pid, ref: Ref, value: Any) -> None: ...

    def link(self, src: Pid, dst: Pid) -> None: ...

    def unlink(self, src: Pid, dst: Pid) -> None: ...

    def exit(self, src: Pid, dst: Pid, reason: Any, *, dead: bool = False) -> None:
        """An exit signal. ``dead``: ``src`` does not exist (any more) and this
        is the runtime's ``noproc`` answer on its behalf (a router may send it
        like any other signal of the pair)."""
        ...

    def monitor(self, src: Pid, dst: RemoteDest, ref: Ref) -> None: ...

    def demonitor(self, src: Pid, dst: RemoteDest, ref: Ref) -> None: ...

    def down(self, src: Pid | str, dst: Pid, ref: Ref, reason: Any, *, dead: bool = False) -> None:
        """A monitor's ``Down``; ``dead`` as for :meth:`exit`."""
        ...

    def exited(self, pid: Pid) -> None:
        """``pid``, a local process, has exited and sent its last signal: no
        call above will name it as ``src`` again."""
        ...
