"""
The pair chat's connections: one conversation (L{PeerProtocol}, the same
for both ends), the server's one-at-a-time rule (L{PairServerFactory}), and
the busy line for whoever comes while a conversation is going on
(L{BusyProtocol}).

Nothing here knows about terminals: a conversation reports to an
L{IPeerListener}, and the server's factory to an L{IServerOperator}.
"""

from __future__ import annotations

import enum

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from chat.peer.framing import Decoder, Event, Handle, Message, Quit, encode_message, encode_quit


class Ending(enum.Enum):
    """How a conversation ended."""

    #: We said C{\\quit}.
    WE_QUIT = "we quit"
    #: The peer said C{\\quit}.
    PEER_QUIT = "the peer quit"
    #: The peer closed the connection without a word.
    PEER_CLOSED = "the peer closed the connection"
    #: The connection failed.
    LOST = "the connection was lost"


class IPeerListener(Interface):
    """What the owner of a conversation is told."""

    def conversation_started(conversation: PeerProtocol) -> None:
        """The connection is made: the first thing a listener is told."""

    def message_received(message: Message) -> None:
        """The peer sent a message."""

    def conversation_ended(ending: Ending) -> None:
        """The connection is closed: the last thing a listener is told."""


class IServerOperator(IPeerListener):
    """What the person running the server is told, besides their conversation."""

    def turned_away(address: str) -> None:
        """A client at C{address} came during a conversation, and got the busy line."""


def describe_address(address: IAddress | None) -> str:
    """C{host:port}, with an IPv6 host in brackets."""
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    return "an unknown address"


class _State(enum.Enum):
    OPEN = "open"
    #: We sent the quit, and are closing.
    QUITTING = "quitting"
    #: The peer sent the quit; we are closing.
    PEER_QUIT = "peer quit"
    CLOSED = "closed"


class PeerProtocol(Protocol):
    """
    One conversation, from either end.  What arrives goes through a
    L{Decoder}; text that may be the first part of a message split across
    reads is given C{quiet} seconds for the rest to come.

    Until a listener is set (L{start}, or the constructor), what happens is
    kept, and told to it when it is.
    """

    #: Seconds without data after which an unfinished message is taken as
    #: whole.  Anything typed arrives much further apart than this.
    quiet = 0.2
    #: Seconds to let our quit reach a peer that is not reading before
    #: closing anyway.
    goodbye_timeout = 5.0

    def __init__(self, clock: IReactorTime, listener: IPeerListener | None = None) -> None:
        self.clock = clock
        self._listener = listener
        self._state = _State.OPEN
        self._decoder = Decoder()
        self._quiet: IDelayedCall | None = None
        self._goodbye: IDelayedCall | None = None
        #: Told to no listener yet: messages, then perhaps the ending.
        self._kept: list[Message | Ending] = []
        self._started = False
        #: Where the peer is, C{host:port}.
        self.address = "an unknown address"

    @property
    def peer_handle(self) -> str | None:
        """The handle the peer uses, once its first message has said it."""
        return self._decoder.peer

    # --- the owner's requests ---------------------------------------------------

    def start(self, listener: IPeerListener) -> None:
        """Report to C{listener}, starting with what happened so far."""
        self._listener = listener
        self._report_start()
        kept, self._kept = self._kept, []
        for item in kept:
            self._tell(item)

    def send_message(self, handle: Handle, text: str) -> None:
        """Send C{handle> text} as one write."""
        if self._state is _State.OPEN:
            self.transport.write(encode_message(handle, text))  # type: ignore[union-attr]

    def quit(self, handle: Handle | None) -> None:
        """Say C{\\quit} and close, once it is written (or C{goodbye_timeout} has passed)."""
        if self._state is not _State.OPEN:
            return
        self._state = _State.QUITTING
        self.transport.write(encode_quit(handle))  # type: ignore[union-attr]
        self._close()

    def abort(self) -> None:
        """Close now, whatever is still unsent."""
        if self._state is not _State.CLOSED:
            self.transport.abortConnection()  # type: ignore[union-attr]

    # --- Protocol ---------------------------------------------------------------

    def connectionMade(self) -> None:
        self.address = describe_address(self.transport.getPeer())  # type: ignore[union-attr]
        self._report_start()

    def dataReceived(self, data: bytes) -> None:
        if self._state not in (_State.OPEN, _State.QUITTING):
            return
        self._decoder, events = self._decoder.feed(data)
        self._received(events)
        self._wait_for_quiet()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        state, self._state = self._state, _State.CLOSED
        for call in (self._quiet, self._goodbye):
            if call is not None and call.active():
                call.cancel()
        if state in (_State.OPEN, _State.QUITTING):
            # What was waiting for the rest of its message is all there is.
            self._decoder, events = self._decoder.flush()
            if self._deliver(events) and state is _State.OPEN:
                state = _State.PEER_QUIT
        if state is _State.QUITTING:
            ending = Ending.WE_QUIT
        elif state is _State.PEER_QUIT:
            ending = Ending.PEER_QUIT
        elif reason.check(ConnectionDone):
            ending = Ending.PEER_CLOSED
        else:
            ending = Ending.LOST
        self._tell(ending)

    # --- inside -----------------------------------------------------------------

    def _report_start(self) -> None:
        if self._listener is not None and self.transport is not None and not self._started:
            self._started = True
            self._listener.conversation_started(self)

    def _deliver(self, events: tuple[Event, ...]) -> bool:
        """Pass on the messages, up to a quit; whether there was one."""
        for event in events:
            if isinstance(event, Quit):
                return True
            self._tell(event)
        return False

    def _received(self, events: tuple[Event, ...]) -> None:
        if self._deliver(events) and self._state is _State.OPEN:
            self._state = _State.PEER_QUIT
            self._close()

    def _wait_for_quiet(self) -> None:
        if self._quiet is not None and self._quiet.active():
            self._quiet.cancel()
        self._quiet = None
        if self._decoder.waiting and self._state in (_State.OPEN, _State.QUITTING):
            self._quiet = self.clock.callLater(self.quiet, self._went_quiet)

    def _went_quiet(self) -> None:
        self._quiet = None
        self._decoder, events = self._decoder.flush()
        self._received(events)

    def _close(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]
        self._goodbye = self.clock.callLater(self.goodbye_timeout, self.abort)

    def _tell(self, item: Message | Ending) -> None:
        listener = self._listener
        if listener is None:
            self._kept.append(item)
        elif isinstance(item, Ending):
            listener.conversation_ended(item)
        else:
            listener.message_received(item)


@implementer(IPeerListener)
class PairServerFactory(ServerFactory):
    """
    The server's side: one conversation at a time, and the busy line for
    anyone else.  It follows its conversation to know when it is over, and
    passes everything on to the operator.
    """

    #: Seconds a turned-away client has to read the busy line and close.
    busy_timeout = 30.0

    def __init__(self, handle: Handle, clock: IReactorTime) -> None:
        self.handle = handle
        self.clock = clock
        self.operator: IServerOperator | None = None
        self.conversation: PeerProtocol | None = None

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        operator = self.operator
        if operator is None:
            return None
        if self.conversation is not None:
            operator.turned_away(describe_address(addr))
            return BusyProtocol(self.busy_line(), self.clock, self.busy_timeout)
        conversation = PeerProtocol(self.clock, self)
        self.conversation = conversation
        return conversation

    def busy_line(self) -> bytes:
        """
        One message, so that a classic client shows it as the server's
        reply.  It names the other client by handle only: its address is
        not for strangers.
        """
        other = self.conversation.peer_handle if self.conversation is not None else None
        text = f"busy: already chatting with {other or 'someone else'}; try again later"
        return encode_message(self.handle, text)

    # --- IPeerListener, for the one conversation --------------------------------

    def conversation_started(self, conversation: PeerProtocol) -> None:
        if self.operator is not None:
            self.operator.conversation_started(conversation)

    def message_received(self, message: Message) -> None:
        if self.operator is not None:
            self.operator.message_received(message)

    def conversation_ended(self, ending: Ending) -> None:
        self.conversation = None
        if self.operator is not None:
            self.operator.conversation_ended(ending)


class BusyProtocol(Protocol):
    """
    A client that came during a conversation: it gets the busy line, and the
    end of the stream.  Its connection stays open for reading until it closes
    (or C{timeout} passes), so that what it sends does not make our side
    reset the connection before it has read the line.
    """

    def __init__(self, line: bytes, clock: IReactorTime, timeout: float) -> None:
        self.line = line
        self.clock = clock
        self.timeout = timeout
        self._timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(self.line)
        tcp = ITCPTransport(transport, None)
        if tcp is None:
            transport.loseConnection()
            return
        tcp.loseWriteConnection()
        self._timer = self.clock.callLater(self.timeout, tcp.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        """What a turned-away client says is not for anyone."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
