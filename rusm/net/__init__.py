"""rusm.net: the cluster (QUIC, mutual TLS), the wire codec and the observe channel.

Depends on ``rusm.actors``; knows nothing of ``rusm.tui``.
"""
