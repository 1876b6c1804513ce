"""Rebuild the recorded feeds the TUI tests replay.

    python -m tests.data.make_recordings

The samples are arithmetic on a tick number (tests/tui_helpers.py), so the
files come out byte for byte the same; a test checks that they do.
"""

from __future__ import annotations

from rusm.tui.feeds import write_recording
from tests.tui_helpers import LONDON, LONDON_DOWN, london_disconnected, london_samples


def main() -> None:
    write_recording(LONDON, london_samples())
    write_recording(LONDON_DOWN, london_disconnected())
    print(f"wrote {LONDON} and {LONDON_DOWN}")


if __name__ == "__main__":
    main()
