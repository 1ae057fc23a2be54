"""
The console of a line-oriented chat program: what the chat client and the
pair chat share to read lines from the user and show text while they type.

The application implements L{IConsoleApp}; the console it gets from
L{open_console} provides L{IConsole}::

    IConsoleApp (the application's side)
        line_entered(line)    the user entered a line (no line ending)
        interrupted()         Ctrl+C (or SIGINT); the current prompt is
                              dropped
        input_ended()         Ctrl+D on an empty line, or the end of piped
                              input; the current prompt is dropped

    IConsole (the console's side)
        show(text)            print complete lines above the line being typed
        set_prompt(prompt, secret=False, history=True)
                              ask for one line, showing prompt before it;
                              secret=True hides what is typed (a password),
                              history=False keeps it out of the history
                              (a username)
        interactive           a person types the input, not a script
        close()               restore the terminal; the Deferred it returns
                              fires once everything shown has been written

    open_console(app, reactor=None, stdin=0, stdout=1) -> the console

A prompt asks for exactly one line.  Once a line is entered, further input
-- keys typed ahead on a terminal, lines read ahead from a pipe -- is held
until the application calls C{set_prompt} again, so every line meets the
prompt meant for it: a password typed before its prompt appears is not
echoed, and a script's lines are given out one per prompt.  An application
that always wants the next line calls C{set_prompt} from C{line_entered}.
Ctrl+C is never held.  After C{interrupted} or C{input_ended} there is no
prompt either, until the application sets one.

When stdin and stdout are both terminals, L{TerminalConsole} puts the
terminal in raw mode and edits one input row at the bottom of the screen
(arrows, Home/End, history, the usual Ctrl keys, Ctrl+Z, any script the
terminal can type), redrawing it below whatever C{show} prints; the terminal
is restored by C{close}, when the reactor shuts down, and at interpreter
exit.
Otherwise L{PlainConsole} reads lines and writes lines, with no escape
sequences at all: its output is a transcript (each prompt followed by the
line given to it, secret lines left out).  This module is POSIX only.

Text from elsewhere passes through L{visible} before it reaches the
terminal, so a peer cannot send escape sequences to the user's terminal.
"""

from __future__ import annotations

import atexit
import codecs
import enum
import fcntl
import os
import re
import signal
import struct
import termios
import tty
import unicodedata
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.conch.insults import insults
from twisted.internet import stdio
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

__all__ = [
    "IConsole",
    "IConsoleApp",
    "LineEditor",
    "PlainConsole",
    "TerminalConsole",
    "cell_width",
    "open_console",
    "visible",
]


class IConsoleApp(Interface):
    """What a program using a console is told about its user."""

    def line_entered(line: str) -> None:
        """
        The user entered C{line} at the current prompt.  The console now
        holds further input until the next C{set_prompt}.
        """

    def interrupted() -> None:
        """Ctrl+C, or SIGINT.  The current prompt, if any, is dropped."""

    def input_ended() -> None:
        """
        Ctrl+D on an empty line, or the end of piped input once every line
        before it has been entered.  The current prompt is dropped.
        """


class IConsole(Interface):
    """How a program talks to its user."""

    interactive = Attribute(
        """
        True when a person types the input (stdin is a terminal), False when
        it is a script (a pipe or a file), whose lines were all written
        before any answer was seen.
        """
    )

    def show(text: str) -> None:
        """
        Print C{text}, one or more complete lines separated by newlines,
        above the line being typed, which stays as it was.
        """

    def set_prompt(prompt: str, secret: bool = False, history: bool = True) -> None:
        """
        Ask for one line, showing C{prompt} before it.  With C{secret} what
        is typed is not shown and not kept in the history.  With
        C{history=False} it is shown but not kept either: for what is typed
        to log in, which Up at a later prompt should never bring back.
        """

    def close() -> Deferred[None]:
        """
        Stop reading and restore the terminal.  The Deferred fires once all
        that was shown has been written.
        """


# C0 controls except tab, DEL, and C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _replace_control(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20 or code == 0x7F:
        return "^" + chr(code ^ 0x40)
    return "\N{REPLACEMENT CHARACTER}"


def visible(text: str) -> str:
    """
    C{text} with its control characters shown as C{^X}, so that nothing
    received can move the cursor, clear the screen or retitle the window.
    """
    return _CONTROL.sub(_replace_control, text)


def _lines(text: str) -> list[str]:
    return [visible(line.removesuffix("\r")) for line in text.split("\n")]


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or ch == "\u200b":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cell_width(text: str | list[str]) -> int:
    """The number of terminal columns C{text} takes: CJK takes two, accents none."""
    return sum(_char_width(ch) for ch in text)


class _Mode(enum.Enum):
    """What the console does with what the user types."""

    #: No prompt: input is held until the application asks for a line.
    WAITING = "waiting"
    #: A prompt, and the line typed after it is shown.
    EDITING = "editing"
    #: A prompt, and the line typed after it is hidden.
    SECRET = "secret"
    #: Closed: input is ignored, nothing more is written.
    CLOSED = "closed"


_HISTORY_LIMIT = 1000
_ESC = "\x1b"
_ERASE_TO_END = _ESC + "[K"


class LineEditor(insults.TerminalProtocol):
    """
    The input row at the bottom of a terminal in raw mode.

    L{twisted.conch.recvline.RecvLine} is the model, but it edits bytes and
    moves the cursor one step per keystroke, which breaks on any character
    that is not ASCII (it drops them) or not one column wide, and on lines
    longer than the terminal.  Here the line is text, and every change
    redraws the whole row: the prompt, then as much of the line around the
    cursor as fits (the row scrolls sideways rather than wrapping, so that
    output can always be printed above exactly one row).

    Keys are parsed by L{insults.ServerProtocol}, which wraps this protocol;
    what is drawn goes to the terminal through it.
    """

    #: Called for Ctrl+Z; a console on a real terminal sets it.
    suspend: Callable[[], None] | None = None

    def __init__(self, app: IConsoleApp, width: int = 80) -> None:
        self.app = app
        self.width = width
        self.mode = _Mode.WAITING
        self.prompt = ""
        self.buffer: list[str] = []
        self.cursor = 0
        self.history: list[str] = []
        #: The line entered at the current prompt goes into the history.
        self._keep = True
        self._offset = 0
        self._history_index = 0
        self._draft: list[str] = []
        self._held: deque[tuple[Any, Any]] = deque()
        self._releasing = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._keys: dict[Any, Callable[[], None]] = {}
        self._alt_keys: dict[Any, Callable[[], None]] = {}
        self._sequences: dict[bytes, Callable[[], None]] = {}

    def connectionMade(self) -> None:
        t = self.terminal
        self._keys = {
            b"\r": self._enter,
            b"\n": self._enter,
            b"\x7f": self._backspace,
            b"\x08": self._backspace,
            b"\x01": self._home,
            b"\x05": self._end,
            b"\x02": self._left,
            b"\x06": self._right,
            b"\x10": self._up,
            b"\x0e": self._down,
            b"\x0b": self._kill_to_end,
            b"\x15": self._kill_to_start,
            b"\x17": self._delete_word,
            b"\x0c": self._draw,
            b"\x04": self._end_of_input,
            b"\t": self._tab,
            b"\x1a": self._suspend,
            t.LEFT_ARROW: self._left,
            t.RIGHT_ARROW: self._right,
            t.UP_ARROW: self._up,
            t.DOWN_ARROW: self._down,
            t.HOME: self._home,
            t.END: self._end,
            t.DELETE: self._delete,
        }
        self._alt_keys = {
            b"b": self._word_left,
            b"f": self._word_right,
            b"\x7f": self._delete_word,
            b"d": self._delete_word_forward,
        }
        # Cursor keys in application mode, and Ctrl+arrow, come as sequences
        # ServerProtocol does not name.
        self._sequences = {
            b"\x1b[OA": self._up,
            b"\x1b[OB": self._down,
            b"\x1b[OC": self._right,
            b"\x1b[OD": self._left,
            b"\x1b[OH": self._home,
            b"\x1b[OF": self._end,
            b"\x1b[1;5C": self._word_right,
            b"\x1b[1;5D": self._word_left,
            b"\x1b[1;3C": self._word_right,
            b"\x1b[1;3D": self._word_left,
        }

    # --- the console's requests -------------------------------------------------

    def show(self, text: str) -> None:
        if self.mode is _Mode.CLOSED:
            return
        self._write("\r" + _ERASE_TO_END + "\n".join(_lines(text)) + "\n" + self._row())

    def set_prompt(self, prompt: str, secret: bool = False, history: bool = True) -> None:
        if self.mode is _Mode.CLOSED:
            return
        self.prompt = visible(prompt)
        self.mode = _Mode.SECRET if secret else _Mode.EDITING
        self._keep = history and not secret
        self._draw()
        self._release_held()

    def close(self) -> None:
        """Erase the input row and ignore the keyboard from now on."""
        if self.mode is _Mode.CLOSED:
            return
        self.mode = _Mode.CLOSED
        self._held.clear()
        self._write("\r" + _ERASE_TO_END)

    def resize(self, width: int) -> None:
        self.width = max(width, 2)
        self._draw()

    # --- insults.TerminalProtocol -----------------------------------------------

    def terminalSize(self, width: int, height: int) -> None:
        self.resize(width)

    def keystrokeReceived(self, keyID: Any, modifier: Any) -> None:
        if self.mode is _Mode.CLOSED:
            return
        if keyID == b"\x03":
            self.interrupt()
        elif self.mode is _Mode.WAITING or self._held:
            self._held.append((keyID, modifier))
        else:
            self._handle(keyID, modifier)

    def unhandledControlSequence(self, seq: bytes) -> None:
        action = self._sequences.get(seq)
        if action is not None:
            self.keystrokeReceived(_Sequence(action), None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.mode is not _Mode.CLOSED:
            # The terminal went away (hangup): there is no more input.
            self.mode = _Mode.CLOSED
            self.app.input_ended()

    # --- input ------------------------------------------------------------------

    def _release_held(self) -> None:
        """Replay keys typed ahead, up to the next line entered."""
        if self._releasing:
            return
        self._releasing = True
        try:
            while self._held and self.mode in (_Mode.EDITING, _Mode.SECRET):
                self._handle(*self._held.popleft())
        finally:
            self._releasing = False

    def _handle(self, keyID: Any, modifier: Any) -> None:
        if isinstance(keyID, _Sequence):
            keyID.action()
            return
        if modifier is not None and modifier == self.terminal.ALT:
            action = self._alt_keys.get(keyID)
            if action is not None:
                action()
                return
        action = self._keys.get(keyID)
        if action is not None:
            self._decoder.reset()
            action()
        elif isinstance(keyID, bytes) and len(keyID) == 1 and (keyID >= b"\x80" or b" " <= keyID < b"\x7f"):
            text = self._decoder.decode(keyID)
            text = "".join(ch for ch in text if unicodedata.category(ch) != "Cc")
            if text:
                self._insert(text)

    def _insert(self, text: str) -> None:
        self.buffer[self.cursor : self.cursor] = list(text)
        self.cursor += len(text)
        self._draw()

    def _enter(self) -> None:
        line = "".join(self.buffer)
        secret = self.mode is _Mode.SECRET
        self._commit("" if secret else line)
        if self._keep and line.strip() and (not self.history or self.history[-1] != line):
            self.history.append(line)
            del self.history[:-_HISTORY_LIMIT]
        self._history_index = len(self.history)
        self.app.line_entered(line)

    def _commit(self, shown: str) -> None:
        """Leave the row on the screen as typed, and wait for the next prompt."""
        self._write("\r" + _ERASE_TO_END + self.prompt + shown + "\n")
        self.mode = _Mode.WAITING
        self.prompt = ""
        self.buffer = []
        self.cursor = 0
        self._offset = 0
        self._draft = []

    def interrupt(self) -> None:
        """Ctrl+C: drop the line being typed (left on screen), tell the app."""
        if self.mode is _Mode.CLOSED:
            return
        if self.mode in (_Mode.EDITING, _Mode.SECRET):
            shown = "" if self.mode is _Mode.SECRET else "".join(self.buffer)
            self._commit(shown + "^C")
        self._held.clear()
        self.app.interrupted()

    def _end_of_input(self) -> None:
        if self.buffer:
            self._delete()
            return
        self._commit("")
        self._held.clear()
        self.app.input_ended()

    def _suspend(self) -> None:
        if self.suspend is not None:
            self.suspend()

    # --- editing ----------------------------------------------------------------

    def _backspace(self) -> None:
        if self.cursor > 0:
            self.cursor -= 1
            del self.buffer[self.cursor]
            self._draw()

    def _delete(self) -> None:
        if self.cursor < len(self.buffer):
            del self.buffer[self.cursor]
            self._draw()

    def _left(self) -> None:
        if self.cursor > 0:
            self.cursor -= 1
            self._draw()

    def _right(self) -> None:
        if self.cursor < len(self.buffer):
            self.cursor += 1
            self._draw()

    def _home(self) -> None:
        self.cursor = 0
        self._draw()

    def _end(self) -> None:
        self.cursor = len(self.buffer)
        self._draw()

    def _word_start(self) -> int:
        i = self.cursor
        while i > 0 and not self.buffer[i - 1].isalnum():
            i -= 1
        while i > 0 and self.buffer[i - 1].isalnum():
            i -= 1
        return i

    def _word_end(self) -> int:
        i = self.cursor
        n = len(self.buffer)
        while i < n and not self.buffer[i].isalnum():
            i += 1
        while i < n and self.buffer[i].isalnum():
            i += 1
        return i

    def _word_left(self) -> None:
        self.cursor = self._word_start()
        self._draw()

    def _word_right(self) -> None:
        self.cursor = self._word_end()
        self._draw()

    def _delete_word(self) -> None:
        start = self._word_start()
        del self.buffer[start : self.cursor]
        self.cursor = start
        self._draw()

    def _delete_word_forward(self) -> None:
        del self.buffer[self.cursor : self._word_end()]
        self._draw()

    def _kill_to_end(self) -> None:
        del self.buffer[self.cursor :]
        self._draw()

    def _kill_to_start(self) -> None:
        del self.buffer[: self.cursor]
        self.cursor = 0
        self._draw()

    def _tab(self) -> None:
        self._insert(" " * (4 - self.cursor % 4))

    def _up(self) -> None:
        if self.mode is _Mode.SECRET or self._history_index == 0:
            return
        if self._history_index == len(self.history):
            self._draft = self.buffer
        self._history_index -= 1
        self._recall(list(self.history[self._history_index]))

    def _down(self) -> None:
        if self.mode is _Mode.SECRET or self._history_index >= len(self.history):
            return
        self._history_index += 1
        if self._history_index == len(self.history):
            self._recall(self._draft)
        else:
            self._recall(list(self.history[self._history_index]))

    def _recall(self, line: list[str]) -> None:
        self.buffer = line
        self.cursor = len(line)
        self._draw()

    # --- drawing ----------------------------------------------------------------

    def _write(self, text: str) -> None:
        # ServerProtocol.write turns each newline into CR LF, as raw mode needs.
        self.terminal.write(text.encode("utf-8"))

    def _draw(self) -> None:
        if self.mode is not _Mode.CLOSED:
            self._write(self._row())

    def _row(self) -> str:
        """The input row drawn from its first column, leaving the cursor where the next key goes."""
        if self.mode is _Mode.WAITING:
            return "\r" + _ERASE_TO_END
        if self.mode is _Mode.SECRET:
            return "\r" + self.prompt + _ERASE_TO_END
        shown, column = self._window()
        row = "\r" + self.prompt + shown + _ERASE_TO_END + "\r"
        if column:
            row += f"{_ESC}[{column}C"
        return row

    def _window(self) -> tuple[str, int]:
        """
        The part of the line that fits after the prompt, keeping the cursor
        in view, and the column the cursor is in.  The last column is left
        free so the row never wraps.
        """
        buffer = self.buffer
        room = max(1, self.width - cell_width(self.prompt) - 1)
        if self.cursor < self._offset:
            self._offset = self.cursor
        before = cell_width(buffer[self._offset : self.cursor])
        while before > room:
            before -= _char_width(buffer[self._offset])
            self._offset += 1
        tail = cell_width(buffer[self._offset :])
        while self._offset > 0 and tail + _char_width(buffer[self._offset - 1]) <= room:
            self._offset -= 1
            tail += _char_width(buffer[self._offset])
            before += _char_width(buffer[self._offset])
        shown = []
        used = 0
        for ch in buffer[self._offset :]:
            used += _char_width(ch)
            if used > room:
                break
            shown.append(ch)
        return "".join(shown), cell_width(self.prompt) + before


class _Sequence:
    """A key ServerProtocol did not name, carrying what it does."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action


class _TerminalIO(insults.ServerProtocol):
    """The byte side of a L{TerminalConsole}; tells it when the terminal is gone."""

    def __init__(self, console: TerminalConsole) -> None:
        super().__init__(lambda: console.editor)
        self._console = console

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self._console._lost()


@implementer(IConsole)
class TerminalConsole:
    """
    A console on a terminal: a L{LineEditor} behind L{insults.ServerProtocol}.

    Connect C{protocol} to a transport (L{stdio.StandardIO} on a terminal in
    raw mode; see L{open_console}), or to a test transport.
    """

    #: Only a person types at a terminal.
    interactive = True

    def __init__(self, app: IConsoleApp, width: int = 80) -> None:
        self.editor = LineEditor(app, width)
        self.protocol = _TerminalIO(self)
        self._closing: list[Deferred[None]] = []
        self._gone = False
        #: Set by L{open_console}: puts the terminal back as it was.
        self.restore_terminal: Callable[[], None] = lambda: None

    def show(self, text: str) -> None:
        self.editor.show(text)

    def set_prompt(self, prompt: str, secret: bool = False, history: bool = True) -> None:
        self.editor.set_prompt(prompt, secret, history)

    def close(self) -> Deferred[None]:
        if self._gone:
            self.restore_terminal()
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closing.append(d)
        if len(self._closing) == 1:
            self.editor.close()
            self.protocol.transport.loseConnection()  # type: ignore[union-attr]
        return d

    def _lost(self) -> None:
        self._gone = True
        self.restore_terminal()
        waiters, self._closing = self._closing, []
        for d in waiters:
            d.callback(None)


@implementer(IConsole, IHalfCloseableProtocol)
class PlainConsole(Protocol):
    """
    A console on pipes or files: one line of input per prompt, and output
    as a transcript -- each prompt followed by the line given to it, secret
    lines left out -- with no escape sequences.

    Connect it to a transport (L{stdio.StandardIO}, or a test transport).
    When stdin is a terminal (and stdout is not) C{interactive} and
    C{hide_input} are set, the latter called to stop the terminal echoing a
    secret line.  There is no history to keep anything out of.
    """

    #: Lines read ahead before reading pauses.
    read_ahead = 64

    def __init__(self, app: IConsoleApp) -> None:
        self.app = app
        self.mode = _Mode.WAITING
        self.interactive = False
        self.hide_input: Callable[[bool], None] = lambda hide: None
        self.restore_terminal: Callable[[], None] = lambda: None
        #: The prompt waiting for its line.
        self._prompt = ""
        #: The output ends with that prompt, on an unfinished line.
        self._prompt_open = False
        self._partial = b""
        self._lines: deque[str] = deque()
        self._paused = False
        self._eof = False
        #: input_ended was called: it is said once.
        self._ended = False
        self._releasing = False
        self._closing: list[Deferred[None]] = []
        self._gone = False

    # --- IConsole ---------------------------------------------------------------

    def show(self, text: str) -> None:
        if self.mode is _Mode.CLOSED:
            return
        out = "\n" if self._prompt_open else ""
        self._prompt_open = False
        self._write(out + "\n".join(_lines(text)) + "\n")

    def set_prompt(self, prompt: str, secret: bool = False, history: bool = True) -> None:
        if self.mode is _Mode.CLOSED:
            return
        if self._prompt_open:
            self._write("\n")
        self._prompt = visible(prompt)
        self._prompt_open = bool(self._prompt)
        self.mode = _Mode.SECRET if secret else _Mode.EDITING
        self.hide_input(secret)
        self._write(self._prompt)
        self._release()

    def close(self) -> Deferred[None]:
        if self.mode is not _Mode.CLOSED:
            self.mode = _Mode.CLOSED
            self.hide_input(False)
            if self._prompt_open:
                self._write("\n")
                self._prompt_open = False
        if self._gone:
            self.restore_terminal()
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closing.append(d)
        if len(self._closing) == 1:
            self.transport.loseConnection()  # type: ignore[union-attr]
        return d

    # --- Protocol ---------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._lines.append(line.removesuffix(b"\r").decode("utf-8", "replace"))
        if len(self._lines) >= self.read_ahead and not self._paused:
            self._paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]
        self._release()

    def readConnectionLost(self) -> None:
        if self._partial:
            self._lines.append(self._partial.removesuffix(b"\r").decode("utf-8", "replace"))
            self._partial = b""
        self._eof = True
        self._release()

    def writeConnectionLost(self) -> None:
        # Nobody reads what is shown any more (a closed pipe): stop as if the
        # input had ended.
        if self.mode is not _Mode.CLOSED and not self._ended:
            self._end()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._gone = True
        self.restore_terminal()
        waiters, self._closing = self._closing, []
        for d in waiters:
            d.callback(None)

    # --- signals ----------------------------------------------------------------

    def interrupt(self) -> None:
        """SIGINT: the terminal's Ctrl+C, when stdin is not that terminal."""
        if self.mode is _Mode.CLOSED:
            return
        self._drop_prompt()
        self.app.interrupted()

    # --- input ------------------------------------------------------------------

    def _release(self) -> None:
        """Give out lines read ahead, one per prompt, then the end of input."""
        if self._releasing:
            return
        self._releasing = True
        try:
            while self.mode in (_Mode.EDITING, _Mode.SECRET):
                if self._lines:
                    self._enter(self._lines.popleft())
                elif self._eof and not self._ended:
                    self._end()
                else:
                    break
            if self._paused and len(self._lines) < self.read_ahead // 2 and self.mode is not _Mode.CLOSED:
                self._paused = False
                self.transport.resumeProducing()  # type: ignore[union-attr]
        finally:
            self._releasing = False

    def _enter(self, line: str) -> None:
        secret = self.mode is _Mode.SECRET
        # Output since the prompt moved it up: repeat it above its line.
        prompt = "" if self._prompt_open else self._prompt
        self._write(prompt + ("" if secret else visible(line)) + "\n")
        self._prompt_open = False
        self.mode = _Mode.WAITING
        self.hide_input(False)
        self.app.line_entered(line)

    def _end(self) -> None:
        self._ended = True
        self._drop_prompt()
        self.app.input_ended()

    def _drop_prompt(self) -> None:
        if self._prompt_open:
            self._write("\n")
            self._prompt_open = False
        if self.mode is not _Mode.CLOSED:
            self.mode = _Mode.WAITING
            self.hide_input(False)

    def _write(self, text: str) -> None:
        if text and not self._gone:
            self.transport.write(text.encode("utf-8"))  # type: ignore[union-attr]


# --- opening a console on the process's stdin and stdout ----------------------


class _SavedTerminal:
    """
    How stdin and stdout were before the console changed them: the terminal
    attributes (raw mode, echo) and the file flags (L{stdio.StandardIO}
    makes both non-blocking, which the shell would inherit).
    """

    def __init__(self, stdin: int, stdout: int) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.flags = {fd: fcntl.fcntl(fd, fcntl.F_GETFL) for fd in {stdin, stdout}}
        self.attributes: list[Any] | None = None
        if os.isatty(stdin):
            self.attributes = termios.tcgetattr(stdin)
        self.changed = False

    def raw(self) -> None:
        tty.setraw(self.stdin, termios.TCSADRAIN)
        self.changed = True

    def echo(self, on: bool) -> None:
        if self.attributes is None:
            return
        attributes = termios.tcgetattr(self.stdin)
        if on:
            attributes[3] |= termios.ECHO
        else:
            attributes[3] &= ~termios.ECHO
        termios.tcsetattr(self.stdin, termios.TCSANOW, attributes)
        self.changed = True

    def non_blocking(self) -> None:
        for fd in self.flags:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)

    def restore(self) -> None:
        for fd, flags in self.flags.items():
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
            except OSError:
                pass
        if self.changed and self.attributes is not None:
            self.changed = False
            try:
                termios.tcsetattr(self.stdin, termios.TCSADRAIN, self.attributes)
            except (OSError, termios.error):
                pass


def _terminal_width(fd: int) -> int:
    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return 80
    _, columns, _, _ = struct.unpack("HHHH", packed)
    return columns or 80


class _Signals:
    """
    Signal handlers that run their work in the reactor thread, and are
    removed again when the console closes.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._previous: dict[int, Any] = {}

    def handle(self, signum: int, handler: Callable[[], None]) -> None:
        def received(signum: int, frame: object) -> None:
            self.reactor.callFromThread(handler)

        previous = signal.signal(signum, received)
        self._previous.setdefault(signum, previous)

    def remove(self) -> None:
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _standard_io(protocol: Protocol, stdin: int, stdout: int, reactor: Any) -> None:
    # Type checkers see the Windows StandardIO, which takes no descriptors.
    stdio.StandardIO(protocol, stdin, stdout, reactor)  # type: ignore[call-arg]


def open_console(
    app: IConsoleApp, reactor: Any = None, stdin: int = 0, stdout: int = 1
) -> TerminalConsole | PlainConsole:
    """
    Open the console that suits stdin and stdout: a L{TerminalConsole} if
    both are terminals, a L{PlainConsole} otherwise.

    Either one routes SIGINT to C{app.interrupted}, and gives stdin and
    stdout back as they were on C{close}, when the reactor shuts down, and
    at exit, whichever comes first.
    """
    if reactor is None:
        from twisted.internet import reactor
    saved = _SavedTerminal(stdin, stdout)
    signals = _Signals(reactor)
    restored = False

    def restore() -> None:
        nonlocal restored
        if not restored:
            restored = True
            signals.remove()
            saved.restore()
            atexit.unregister(abandon)

    console: TerminalConsole | PlainConsole
    interrupt: Callable[[], None]
    if os.isatty(stdin) and os.isatty(stdout):
        terminal = console = TerminalConsole(app, _terminal_width(stdout))
        terminal.restore_terminal = restore
        terminal.editor.suspend = lambda: _suspend(terminal, saved)
        saved.raw()
        _standard_io(terminal.protocol, stdin, stdout, reactor)
        interrupt = terminal.editor.interrupt

        def resized() -> None:
            terminal.editor.resize(_terminal_width(stdout))

        signals.handle(signal.SIGWINCH, resized)
    else:
        plain = console = PlainConsole(app)
        if os.isatty(stdin):
            plain.interactive = True
            plain.hide_input = lambda hide: saved.echo(not hide)
        plain.restore_terminal = restore
        _standard_io(plain, stdin, stdout, reactor)
        interrupt = plain.interrupt

    def abandon() -> None:
        """The process is ending without C{close}: leave the input row be."""
        if not restored and saved.changed:
            try:
                os.write(stdout, b"\r\n")
            except OSError:
                pass
        restore()

    def catch_interrupt() -> None:
        # The reactor installs its own SIGINT handler as it starts; this one
        # replaces it.
        if not restored:
            signals.handle(signal.SIGINT, interrupt)

    reactor.callWhenRunning(catch_interrupt)
    reactor.addSystemEventTrigger("after", "shutdown", abandon)
    atexit.register(abandon)
    return console


def _suspend(console: TerminalConsole, saved: _SavedTerminal) -> None:
    """Ctrl+Z: give the terminal back to the shell, and take it again on C{fg}."""
    try:
        os.write(saved.stdout, b"\r\x1b[K")
    except OSError:
        pass
    saved.restore()
    os.kill(os.getpid(), signal.SIGTSTP)
    # Continued.
    saved.non_blocking()
    saved.raw()
    console.editor.resize(_terminal_width(saved.stdout))
