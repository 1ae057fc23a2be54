"""
The client's side of the wire: server output turned into lines and prompts.

The server ends its lines with CRLF and sends its prompts (C{Username: },
C{Password: }, C{Command: }, C{Intro: }) without one; each prompt means it
is ready for exactly one line.  When a chat message arrives while the user
sits at a prompt, the server first ends the prompt's line with a bare CRLF,
for C{nc}; L{ChatClientProtocol} drops that empty line, and passes on
everything else, already decoded, to an L{IServerListener}.

Nothing here knows about terminals.
"""

from __future__ import annotations

import codecs
import enum

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import Interface, implementer


class PromptKind(enum.Enum):
    USERNAME = "Username: "
    PASSWORD = "Password: "
    COMMAND = "Command: "
    INTRO = "Intro: "
    #: A partial line the server left unfinished: a prompt this client does
    #: not know.
    OTHER = ""


_KNOWN = {kind.value: kind for kind in PromptKind if kind is not PromptKind.OTHER}


@attrs.frozen
class Prompt:
    """A prompt from the server: it is ready for one line."""

    text: str
    kind: PromptKind
    #: What is typed after it should not be shown.
    secret: bool

    @classmethod
    def parse(cls, text: str) -> Prompt:
        kind = _KNOWN.get(text, PromptKind.OTHER)
        secret = kind is PromptKind.PASSWORD or (kind is PromptKind.OTHER and "password" in text.lower())
        return cls(text, kind, secret)


class IServerListener(Interface):
    """What the client is told about the server."""

    def line_received(text: str) -> None:
        """A complete line from the server, without its line ending."""

    def prompt_received(prompt: Prompt) -> None:
        """The server is ready for one line."""

    def connection_lost(reason: Failure) -> None:
        """The connection is closed; C{reason} says whether cleanly."""


class NoGreeting(Exception):
    """
    The server took the TCP connection but said nothing: the chat server
    greets at once, so this one is probably waiting for a TLS handshake.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the server said nothing in {seconds:g} seconds")
        self.seconds = seconds


class _State(enum.Enum):
    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSED = "closed"


@implementer(IHandshakeListener)
class ChatClientProtocol(Protocol):
    """
    One connection to the chat server.

    C{ready} fires with the protocol once the connection can be used: over
    TCP once the server has said something (it greets every connection
    with C{Username: } at once), over TLS after the handshake.  So a
    certificate the client refuses, or a server that speaks TLS to a client
    that does not, is reported as a failure to connect, not as a session
    that ends before it begins.  If the connection is lost first, C{ready}
    fails with the reason; if a server reached over TCP says nothing for
    C{greeting_timeout} seconds, the connection is dropped and C{ready}
    fails with L{NoGreeting}.  (Without a C{greeting_timeout} it waits as
    long as the server does.)

    Until L{start} names a listener, what arrives is kept.
    """

    #: Seconds a partial line that is not a known prompt may wait for the
    #: rest of its line before it is taken for a prompt.
    prompt_grace = 1.0

    def __init__(self, clock: IReactorTime, tls: bool = False, greeting_timeout: float | None = None) -> None:
        self.clock = clock
        self.tls = tls
        self.greeting_timeout = greeting_timeout
        self.ready: Deferred[ChatClientProtocol] = Deferred()
        self._state = _State.CONNECTING
        self._listener: IServerListener | None = None
        self._early: list[bytes] = []
        self._lost: Failure | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._partial = ""
        #: A prompt was the last thing received: an empty line now only ends
        #: the prompt's line.
        self._after_prompt = False
        self._grace: IDelayedCall | None = None
        #: Gives up on a server reached over TCP that has not said a word.
        self._silence: IDelayedCall | None = None

    # --- the client's requests --------------------------------------------------

    def start(self, listener: IServerListener) -> None:
        """Deliver what the server sends to C{listener}, starting with what is kept."""
        self._listener = listener
        early, self._early = self._early, []
        for data in early:
            self._parse(data)
        if self._lost is not None:
            self._finish(self._lost)

    def send_line(self, text: str) -> None:
        if self._state is _State.OPEN:
            self.transport.write(text.encode("utf-8") + b"\n")  # type: ignore[union-attr]

    def close(self) -> None:
        """Close once what was sent has been written."""
        if self._state is not _State.CLOSED:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def abort(self) -> None:
        """Close now, without waiting for anything."""
        if self._state is not _State.CLOSED:
            self.transport.abortConnection()  # type: ignore[union-attr]

    # --- Protocol ---------------------------------------------------------------

    def connectionMade(self) -> None:
        if self.tls:
            self._state = _State.HANDSHAKING
        else:
            self._state = _State.OPEN
            if self.greeting_timeout is not None:
                self._silence = self.clock.callLater(self.greeting_timeout, self._silent)

    def handshakeCompleted(self) -> None:
        if self._state is _State.HANDSHAKING:
            self._state = _State.OPEN
            self.ready.callback(self)

    def dataReceived(self, data: bytes) -> None:
        if self._listener is None:
            self._early.append(data)
        else:
            self._parse(data)
        if self._state is _State.OPEN and not self.ready.called:
            # The server's first words, over TCP: kept for the listener.
            self._stop_waiting()
            self.ready.callback(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._state = _State.CLOSED
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._stop_waiting()
        if self._listener is not None:
            self._finish(reason)
        elif not self.ready.called:
            self.ready.errback(reason)
        else:
            self._lost = reason

    def _silent(self) -> None:
        self._silence = None
        self.abort()
        if not self.ready.called:
            assert self.greeting_timeout is not None
            self.ready.errback(NoGreeting(self.greeting_timeout))

    def _stop_waiting(self) -> None:
        if self._silence is not None and self._silence.active():
            self._silence.cancel()
        self._silence = None

    # --- parsing ----------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        assert self._listener is not None
        text = self._decoder.decode(data)
        if not text:
            return
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line.removesuffix("\r"))
        self._check_partial()

    def _line(self, line: str) -> None:
        assert self._listener is not None
        after_prompt, self._after_prompt = self._after_prompt, False
        if after_prompt and not line:
            return
        if line in _KNOWN:
            # A prompt, and in the same read the CRLF that ends its line
            # before a message.
            self._listener.prompt_received(Prompt.parse(line))
            return
        self._listener.line_received(line)

    def _check_partial(self) -> None:
        assert self._listener is not None
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._grace = None
        if self._partial in _KNOWN:
            self._prompt()
        elif self._partial.strip():
            self._grace = self.clock.callLater(self.prompt_grace, self._prompt)

    def _prompt(self) -> None:
        assert self._listener is not None
        self._grace = None
        text, self._partial = self._partial, ""
        self._after_prompt = True
        self._listener.prompt_received(Prompt.parse(text))

    def _finish(self, reason: Failure) -> None:
        assert self._listener is not None
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        if rest.strip():
            self._listener.line_received(rest.removesuffix("\r"))
        self._listener.connection_lost(reason)
