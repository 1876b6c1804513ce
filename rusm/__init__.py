"""RUSM: the BEAM's two superpowers for Python.

``rusm.actors`` is the local actor runtime. The cluster (``rusm.net``) and the
observer (``rusm.tui``) build on it.
"""

from .actors import Call, Down, Exit, Pid, Process, ProcessExit, Ref, Runtime, Supervisor

__all__ = ["Call", "Down", "Exit", "Pid", "Process", "ProcessExit", "Ref", "Runtime", "Supervisor"]
