"""rusm.tui: the Textual observer and ops shell (``rusm top``).

Sees a node only through a feed; imports no transport code.
"""
