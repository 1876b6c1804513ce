"""The observe channel: samples of a live node and commands to it.

``protocol`` is the data (samples, rows, commands, the ``Feed`` protocol);
``session`` the node side; ``server`` the WebSocket server and the QUIC
control-RPC handler; ``client`` one client for both transports.
"""

from rusm.observe.protocol import CommandError, Feed, FeedStatus, ProcessRow, Sample, Subscription

from .client import AttachError, ObserveClient, connect, parse_target
from .server import ObserveServer, serve_attachers, serve_observe

__all__ = [
    "AttachError",
    "CommandError",
    "Feed",
    "FeedStatus",
    "ObserveClient",
    "ObserveServer",
    "ProcessRow",
    "Sample",
    "Subscription",
    "connect",
    "parse_target",
    "serve_attachers",
    "serve_observe",
]
