"""The observe protocol, whatever carries it: samples, rows, commands, sort
keys, the row filter and the errors (``protocol``).

It imports no transport: ``import rusm.tui`` (which knows nodes only through
a feed and this protocol) loads neither websockets nor the QUIC engine. The
transports are in ``rusm.net.observe`` (the node side, the WebSocket server,
the QUIC control-RPC handler and the client).
"""

from .protocol import (
    SORT_KEYS,
    CommandError,
    Feed,
    FeedStatus,
    ProcessRow,
    Sample,
    Subscription,
)

__all__ = [
    "SORT_KEYS",
    "CommandError",
    "Feed",
    "FeedStatus",
    "ProcessRow",
    "Sample",
    "Subscription",
]
