"""
A terminal screen for tests: L{Screen} replays the bytes a program wrote to
a terminal, so a test asserts on what the user would see rather than on
escape sequences.  Used in-process (tests of the line editor) and against
real programs in a pseudo-terminal (the end-to-end tests).
"""

from __future__ import annotations

import re
import unicodedata

_SEQUENCE = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z@~])")


def _width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


class Screen:
    """
    A terminal of C{width} columns and unlimited rows, replaying output.

    Only what a line editor needs is understood: text (wide characters
    take two cells), CR, LF, backspace, cursor left and right, and erase to
    the end of the line.  Anything else fails the test: an unexpected
    escape sequence (a reset, a colour) is a bug.
    """

    def __init__(self, data: bytes, width: int = 80) -> None:
        self.width = width
        self.rows: list[list[str]] = [[]]
        self.x = 0
        self.y = 0
        text = data.decode("utf-8")
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                m = _SEQUENCE.match(text, i)
                if m is None:
                    raise AssertionError(f"unexpected escape sequence at {text[i : i + 8]!r}")
                self._sequence(m.group(1), m.group(2))
                i = m.end()
                continue
            if ch == "\r":
                self.x = 0
            elif ch == "\n":
                self._down()
            elif ch == "\b":
                self.x = max(0, self.x - 1)
            elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
                raise AssertionError(f"unexpected control character {ch!r}")
            else:
                self._put(ch)
            i += 1

    def _row(self) -> list[str]:
        row = self.rows[self.y]
        if len(row) < self.width:
            row.extend(" " * (self.width - len(row)))
        return row

    def _down(self) -> None:
        self.y += 1
        if self.y == len(self.rows):
            self.rows.append([])

    def _put(self, ch: str) -> None:
        w = _width(ch)
        if self.x + w > self.width:
            self.x = 0
            self._down()
        row = self._row()
        row[self.x] = ch
        if w == 2:
            row[self.x + 1] = ""
        self.x += w

    def _sequence(self, params: str, final: str) -> None:
        n = int(params) if params.isdigit() else 1
        if final == "C":
            self.x = min(self.width - 1, self.x + n)
        elif final == "D":
            self.x = max(0, self.x - n)
        elif final == "K" and params in ("", "0"):
            row = self._row()
            row[self.x :] = [" "] * (self.width - self.x)
        else:
            raise AssertionError(f"unexpected escape sequence ESC[{params}{final}")

    def lines(self) -> list[str]:
        """The rows as text, trailing spaces and trailing empty rows removed."""
        lines = ["".join(row).rstrip() for row in self.rows]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    @property
    def cursor_row(self) -> str:
        return "".join(self.rows[self.y]).rstrip()

    @property
    def before_cursor(self) -> str:
        """What is on the cursor's row to the left of the cursor."""
        return "".join(self._row()[: self.x])
