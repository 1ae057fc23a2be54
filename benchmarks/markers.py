"""
The marker a load generator puts in every message text, so a receiver can
tell who sent it and how long it took: ``~LG<sender>.<seq>.<send_ns>~``.

It is chatload's format, so either generator can read the other's traffic.
Receivers look for it anywhere in a line, so any prefix the server adds
(``alice (broadcast): ``, ``alice: ``) is fine.  ``send_ns`` is
C{time.monotonic_ns()}: CLOCK_MONOTONIC is the same clock in every process
of the machine, so a receiver in another worker process can subtract it.
"""

from __future__ import annotations

import re

#: Sender and send time of every marker in a chunk of complete lines.
MARKER = re.compile(rb"~LG(\d+)\.\d+\.(\d+)~")


def make_text(sender: int, seq: int, send_ns: int, size: int) -> bytes:
    """A message text of at least C{size} bytes: the marker, padded with x."""
    marker = b"~LG%d.%d.%d~" % (sender, seq, send_ns)
    if len(marker) < size:
        marker += b"x" * (size - len(marker))
    return marker


def parse(data: bytes) -> list[tuple[int, int]]:
    """(sender, send_ns) of every marker in C{data}, in order."""
    return [(int(s), int(t)) for s, t in MARKER.findall(data)]
