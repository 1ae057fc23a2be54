"""
The TCP edge: bytes in, lines out, for nc, telnet and the terminal client.

L{ChatProtocol} frames and decodes; everything a user can do is decided by
its L{Session}.  It also guards the server against its peer: lines are
bounded, input is held while the session waits, and a client that stops
reading is cut off once what is queued for it passes a bound, instead of
growing the server's memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chat.server.context import ServerContext
from chat.server.edges.bounded import BoundedOutput
from chat.server.edges.gathered import TurnWrites
from chat.server.edges.text import PROMPT_BYTES, TEXT, encode
from chat.server.events import (
    Ask,
    Error,
    Event,
    Failed,
    Fault,
    Goodbye,
    LineTooLong,
    SessionInfo,
    StoredMessage,
    TooManyConnections,
)
from chat.server.interfaces import IEdge
from chat.server.limits import Slot
from chat.server.quietlog import QuietLog
from chat.server.session import Session
from chat.server.twisted_internals import abort_now


def host_of(address: IAddress | None) -> str:
    """
    The client's address as the limits, the guard and the log use it: an
    IPv4 client of a socket that takes both (C{::ffff:10.0.0.1}) is
    C{10.0.0.1}, as it would be on an IPv4 socket.
    """
    host = getattr(address, "host", None)
    if host is None:
        return type(address).__name__
    host = str(host)
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


#: What a connection holds once deliveries go out (one shared empty value).
_NOTHING_HELD = ()

#: Bytes of input held while a command waits for the store before the
#: socket is no longer read: a few lines of a client sending ahead.
HELD_INPUT = 16 * 1024


@implementer(IEdge, IHalfCloseableProtocol)
class ChatProtocol(BoundedOutput, LineReceiver):
    """
    One TCP connection, speaking UTF-8 lines ending in LF or CRLF.

    It is also the producer registered on its own transport, which bounds
    what is queued for a client that stops reading (L{BoundedOutput}).
    """

    delimiter = b"\n"
    MAX_LENGTH = 4096
    #: Seconds that C{close} waits for queued output before aborting.
    close_timeout = 10.0

    factory: ChatFactory
    session: Session
    format = TEXT
    kind = "tcp"
    acknowledges = False
    peer_host: str
    #: Its place in the count of open connections, released when it is lost.
    slot: Slot | None = None

    #: How a message to this user reaches the transport (L{IParticipant}).
    #: Rebound, by this edge alone, as its state changes rather than tested
    #: per message: held until the welcome is done, then the transport's own
    #: C{write} while nothing else needs doing (the hot path of every
    #: broadcast), L{_write} while something does, nothing once closed.
    deliver: Callable[[bytes], None]

    def __init__(self) -> None:
        self._at_prompt = False
        self._discarding = False
        self._receiving = False
        #: Whether input waiting for a command passed L{HELD_INPUT}, and the
        #: socket is no longer read.
        self._held_socket = False
        #: Whether the client ended its input (L{readConnectionLost}).
        self._input_ended = False
        self._abort_call: IDelayedCall | None = None
        self._held: list[bytes] | tuple[()] = []
        self._live = False
        self.deliver = self._held.append
        #: What is written to this client in a turn of the reactor that
        #: handles reads gathers here and goes out as one send at the
        #: turn's end (L{TurnWrites}): the answers to several commands sent
        #: at once, and the messages others sent it in the same turn.
        self._out: list[bytes] | None = None
        self._out_bytes = 0

    # --- connection -----------------------------------------------------------

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.peer_host = host_of(transport.getPeer())
        try:
            transport.setTcpNoDelay(True)
        except (AttributeError, NotImplementedError):
            pass  # not TCP (a test transport, a UNIX socket)
        transport.registerProducer(self, True)
        self.session = Session(self, self.factory.context)
        self.session.start()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._out = None
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        if self.slot is not None:
            self.slot.release()
        self.session.connection_lost()

    # --- input ----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Take C{data} a line at a time, in one pass (LineReceiver's own loop
        copies the buffer for every line, which is quadratic in a large
        write), and only as far as it is wanted: a 64 KiB burst of lines
        from a client about to be closed for it costs the lines read before
        the close, not a list of all of them.

        Once the connection is closing nothing more is read, so what still
        arrives (a flood, say, while the goodbye is being written) is dropped
        rather than kept.
        """
        if self.transport.disconnecting or self.cut_off:
            self._buffer = b""
            return
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1 :]
        buffer = self._buffer + data if self._buffer else data
        if self._receiving or self.paused:
            self._buffer = buffer
            if self.paused and not self._held_socket and len(buffer) > HELD_INPUT:
                # A client sending on while its command waits: now the
                # kernel holds the rest, not this buffer.
                self._held_socket = True
                self.transport.pauseProducing()
            return
        end = buffer.find(b"\n")
        if end < 0:
            # No whole line yet: nothing to answer.
            if len(buffer) > self.MAX_LENGTH:
                self._buffer = b""
                self._discarding = True
                self.lineLengthExceeded(buffer)
            else:
                self._buffer = buffer
            return
        self._receiving = True
        self.factory.turn.begin()
        # A line ended: the user's cursor is at the start of a line.
        self._at_prompt = False
        try:
            at = 0
            transport = self.transport
            while True:
                line = buffer[at:end]
                at = end + 1
                if len(line) > self.MAX_LENGTH:
                    self.lineLengthExceeded(line)
                else:
                    self.lineReceived(line)
                if transport.disconnecting or self.cut_off:
                    self._buffer = b""
                    return
                if self.paused:
                    self._buffer = buffer[at:]
                    return
                end = buffer.find(b"\n", at)
                if end < 0:
                    break
            rest = buffer[at:]
            if len(rest) > self.MAX_LENGTH:
                self._buffer = b""
                self._discarding = True
                self.lineLengthExceeded(rest)
            else:
                self._buffer = rest
        finally:
            # What the lines sent others (broadcasts, private messages) goes
            # out at the end of the turn, with what other clients' lines of
            # the same turn sent (L{TurnWrites.before}): one write per
            # recipient per turn, not one per sender read in it.
            self._receiving = False

    def lineReceived(self, line: bytes) -> None:
        session = self.session
        if not session.admit_input():
            return
        if self._at_prompt:
            self._at_prompt = False
            self._reroute()
        if line[-1:] == b"\r":
            line = line[:-1]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            session.input_error(Failed(Fault.NOT_UTF8))
            return
        session.line_received(text)

    def lineLengthExceeded(self, line: bytes) -> None:
        if not self.session.admit_input():
            return
        if self._at_prompt:
            self._at_prompt = False
            self._reroute()
        self.session.input_error(LineTooLong(self.MAX_LENGTH))

    def pause_input(self) -> None:
        """
        Hold the lines that come while a command waits for the store.  The
        socket is read on until L{HELD_INPUT} bytes wait: a command waits
        for a few milliseconds, and taking the socket out of the reactor's
        set and back costs two system calls per message.
        """
        self.paused = True

    def answering_held_line(self) -> None:
        if self._at_prompt:
            self._at_prompt = False
            self._reroute()

    def resume_input(self) -> None:
        if self.paused:
            self.paused = False
            if self._held_socket:
                self._held_socket = False
                if not self.transport.disconnecting:
                    self.transport.resumeProducing()
            self.dataReceived(b"")
        if self._input_ended:
            self._end_when_answered()

    # --- IHalfCloseableProtocol: a client that ends its input -------------------

    def readConnectionLost(self) -> None:
        """
        The client sent everything it will (C{printf ... | nc -N}, a
        script): what it sent is still answered, in order, and then the
        connection closes.  The socket is read while commands wait for the
        store, so the end can come before their answers.
        """
        self._input_ended = True
        self._end_when_answered()

    def writeConnectionLost(self) -> None:
        pass  # the server never half-closes its side

    def _end_when_answered(self) -> None:
        if self.paused or self._receiving or self.transport.disconnecting:
            return
        if self.session.settled:
            self.transport.loseConnection()

    # --- output ---------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.cut_off:
            return
        if self._at_prompt:
            # Asynchronous output while the user sits at a prompt: start on a
            # fresh line rather than after "Command: ".
            data = b"\r\n" + data
            self._at_prompt = False
        out = self._out
        if out is None:
            turn = self.factory.turn
            if not turn.gathering:
                # Outside any read (a timer, another node): at once.
                self._send_now(data)
                self._reroute()
                return
            # The first write of this turn: the rest of the turn's join it
            # (L{TurnWrites}), and so do deliveries, to keep their order.
            self._out = [data]
            self._out_bytes = len(data)
            if self._live:
                self.deliver = self._write
            turn.add(self)
            return
        # Bounded here, as they are made, so a burst of lines that each cost
        # an answer cannot queue more than a client that stops reading may.
        self._out_bytes += len(data)
        if self._out_bytes > self.max_backlog:
            self._cut_off(self._out_bytes)
            return
        out.append(data)

    def flush_output(self) -> None:
        """The turn is over: write what it gathered for this client, in one send."""
        out, self._out = self._out, None
        if out is None:
            return
        self._out_bytes = 0
        if not self.cut_off:
            self._send_now(b"".join(out) if len(out) > 1 else out[0])
        self._reroute()

    def _send_now(self, data: bytes) -> None:
        if self._congested:
            self._write_congested(data)
        else:
            self.transport.write(data)

    def send(self, event: Event, prompt: Ask | None = None) -> None:
        self._write(encode(event, prompt))
        if prompt is not None:
            self._prompted()

    def send_prompt(self, prompt: Ask) -> None:
        self._write(PROMPT_BYTES[prompt])
        self._prompted()

    def _prompted(self) -> None:
        self._at_prompt = True
        if self._out is None:
            # (While writes gather, deliveries join them anyway, and the
            # route is set again once they are written.)
            self._reroute()

    # --- IParticipant: messages from others ---------------------------------------

    def start_deliveries(self) -> None:
        held, self._held = self._held, _NOTHING_HELD
        self._live = True
        for payload in held:
            self._write(payload)
        self._reroute()

    def stop_deliveries(self) -> None:
        self._live = False
        self._held = _NOTHING_HELD
        self.deliver = _drop

    def logged_in(self) -> bool:
        """Whether this connection's user has logged in (its L{Slot} asks, to make room)."""
        return self.session.logged_in

    def handed(self, messages: Sequence[StoredMessage]) -> None:
        if self._live:
            # Messages from another node come as its replies are read: with
            # the turn's other writes to this client (the answers to its own
            # messages, read from Redis too), in one send.
            self.deliver = self._write
        self.session.handed(messages)

    def goodbye(self, reason: Goodbye) -> Deferred[None]:
        return self.session.goodbye(reason)

    def about(self) -> SessionInfo | None:
        return self.session.about()

    def _reroute(self) -> None:
        """
        Point C{deliver} at the transport itself when nothing needs doing
        per message, else at C{_write}, which opens a fresh line after a
        prompt and counts what a congested client has not read.  Runs when a
        prompt is sent or a line arrives, not per message.
        """
        if not self._live:
            return
        if self._at_prompt or self._congested or self._out is not None or self.cut_off:
            self.deliver = self._write
        else:
            self.deliver = self.transport.write

    def close(self) -> None:
        # What gathered (a goodbye) goes before the connection closes.
        self.flush_output()
        transport: Any = self.transport
        transport.loseConnection()
        if self._abort_call is None:
            self._abort_call = self.factory.context.clock.callLater(
                self.close_timeout, transport.abortConnection
            )

    # --- BoundedOutput ----------------------------------------------------------

    @property
    def max_backlog(self) -> int:
        return self.factory.max_backlog

    @property
    def log_name(self) -> str:
        return self.session.log_name

    @property
    def quiet(self) -> QuietLog:
        return self.session.quiet


def _drop(payload: bytes) -> None:
    """Where messages to a closed session go."""


class Refuse(Protocol):
    """
    Says why a connection is not accepted, then closes it; or, with no
    reason, closes it at once (there is no room for it, see
    L{chat.server.limits.ConnectionCount}).  Either way its slot is
    released when it is gone.
    """

    def __init__(self, reason: Error | None, slot: Slot) -> None:
        self.reason = reason
        self.slot = slot

    def connectionMade(self) -> None:
        transport: Any = self.transport
        if self.reason is None:
            # No room: not even for a sentence, nor a turn's wait for the descriptor.
            abort_now(transport)
            return
        transport.write(encode(self.reason))
        transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.slot.release()


class ChatFactory(ServerFactory):
    """
    Builds a L{ChatProtocol} per connection, all sharing one L{ServerContext}
    (the service with its registry, the portal, the login guard, and the
    count of open connections, shared with every other edge).
    """

    def __init__(
        self, context: ServerContext, max_backlog: int = 256 * 1024, turn: TurnWrites | None = None
    ) -> None:
        self.context = context
        self.max_backlog = max_backlog
        #: The connections whose writes of this turn wait for its end.
        self.turn = turn if turn is not None else TurnWrites(context.clock)
        self.turn.before = context.service.flush

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        connections = self.context.connections
        slot = connections.admit(host_of(addr), self.context.service.quiet)
        if slot.dropped:
            return Refuse(None, slot)
        if slot.refused:
            refusal = Refuse(TooManyConnections(connections.max_per_host), slot)
            slot.owner = refusal
            return refusal
        protocol = ChatProtocol()
        protocol.factory = self
        protocol.slot = slot
        slot.owner = protocol
        slot.logged_in = protocol.logged_in
        return protocol
