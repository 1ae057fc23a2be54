"""
Messages as values.

A L{Delivery} is created once per message sent and handed to every
recipient; it carries its own encoded line so a broadcast to a thousand users
is encoded once, not a thousand times.
"""

from __future__ import annotations

import enum
import time

import attrs


class Kind(enum.Enum):
    PRIVATE = "private"
    BROADCAST = "broadcast"


def _render(sender: str, kind: Kind, text: str) -> str:
    return f"{sender} ({kind.value}): {text}"


@attrs.frozen
class Delivery:
    sender: str
    text: str
    kind: Kind
    sent_at: float
    #: The message as one line of the wire protocol, encoded once.
    wire: bytes = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        line = _render(self.sender, self.kind, self.text) + "\r\n"
        object.__setattr__(self, "wire", line.encode("utf-8"))


@attrs.frozen
class StoredMessage:
    """A message kept for a user who was offline when it was sent."""

    id: int
    recipient: str
    delivery: Delivery

    def render(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.delivery.sent_at))
        d = self.delivery
        return f"[{stamp}] {_render(d.sender, d.kind, d.text)}"
