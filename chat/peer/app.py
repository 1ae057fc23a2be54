"""
The two ends of the pair chat, between a console (L{chat.terminal}) and the
network (L{chat.peer.protocol}).

Both sides are the same to type at: the prompt is your handle, a line is
sent as a message (an empty one is not; one longer than L{MAX_MESSAGE} is
refused, nothing sent), and C{\\quit} leaves.  Messages are shown as they
arrive, above the line being typed, whoever's turn a classic program would
think it is.

L{PairServer} is the person running C{serve}.  It talks with one client at a
time; once that conversation ends it waits for the next, until Ctrl+C (or
Ctrl+D, or the end of piped input, or SIGTERM) stops it::

    WAITING --(a client connects)--> CHATTING --(\\quit from either side,
       ^                                 |       or the connection closes)
       +---------------------------------+
    (Ctrl+C, Ctrl+D, end of input, from either state) --> STOPPING --> STOPPED

Stopping says C{\\quit} to the client, if there is one, and lets it go.

L{PairClient} is the person running C{connect}: one conversation, then the
program exits, 0 if either side said C{\\quit}, 1 if the connection closed
without one (the server was busy, or went away)::

    NAMING --(a valid handle)--> CHATTING --(\\quit, Ctrl+C, Ctrl+D)--> LEAVING
       |                            |                                     |
       +------(\\quit, Ctrl+C, Ctrl+D: a bare \\quit)-------------------> +
                                                                          v
    (the connection closes, from any state) ------------------------> CLOSED
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort
from zope.interface import implementer

from chat.cli import DISCONNECTED, LEFT
from chat.peer.framing import MAX_HANDLE, QUIT, Handle, HandleError, Message, Said, Typed
from chat.peer.protocol import Ending, IPeerListener, IServerOperator, PairServerFactory, PeerProtocol
from chat.terminal import IConsole, IConsoleApp

OpenConsole = Callable[[IConsoleApp], IConsole]

HANDLE_PROMPT = f"Your handle (one word, at most {MAX_HANDLE} characters): "


def ending_line(ending: Ending, handle: str | None, otherwise: str) -> str:
    """
    The line saying how a conversation ended, naming the peer by its handle,
    or as C{otherwise} if it never said one.
    """
    name = handle if handle is not None else otherwise
    subject = handle if handle is not None else otherwise[:1].upper() + otherwise[1:]
    if ending is Ending.WE_QUIT:
        return f"You left the conversation with {name}."
    if ending is Ending.PEER_QUIT:
        return f"{subject} left the conversation."
    if ending is Ending.PEER_CLOSED:
        return f"{subject} closed the connection."
    return f"The connection with {name} was lost."


class ServerState(enum.Enum):
    WAITING = "waiting for a client"
    CHATTING = "chatting"
    STOPPING = "stopping"
    STOPPED = "stopped"


@implementer(IConsoleApp, IServerOperator)
class PairServer:
    """
    The operator of C{serve}, from the first prompt to the exit status,
    which C{finished} fires with once the console is closed.
    """

    def __init__(self, factory: PairServerFactory, port: IListeningPort, open_console: OpenConsole) -> None:
        self.factory = factory
        self.handle = factory.handle
        self.port = port
        self.state = ServerState.WAITING
        self.conversation: PeerProtocol | None = None
        self.finished: Deferred[int] = Deferred()
        self._stop_waiters: list[Deferred[None]] = []
        #: While stopping: fires once the conversation is over.
        self._over: Deferred[None] | None = None
        factory.operator = self
        self.console = open_console(self)

    @property
    def port_number(self) -> int:
        return int(self.port.getHost().port)  # type: ignore[attr-defined]

    def start(self) -> None:
        self.console.show(
            f"Waiting for a client on port {self.port_number}, as {self.handle}.\n"
            f"{QUIT} ends a conversation; Ctrl+C stops the server."
        )
        self._prompt()

    def stop(self) -> Deferred[None]:
        """
        Say C{\\quit} to the client, if there is one, stop listening and give
        the terminal back.  The Deferred fires once that is done.
        """
        if self.state is ServerState.STOPPED:
            return succeed(None)
        if self.state is not ServerState.STOPPING:
            self.state = ServerState.STOPPING
            Deferred.fromCoroutine(self._stop())
        d: Deferred[None] = Deferred()
        self._stop_waiters.append(d)
        return d

    async def _stop(self) -> None:
        listening = maybeDeferred(self.port.stopListening)
        if self.conversation is not None:
            self._over = Deferred()
            self.conversation.quit(self.handle)
            await self._over
        await listening
        self.console.show("Server stopped.")
        await self.console.close()
        self.state = ServerState.STOPPED
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            d.callback(None)
        self.finished.callback(LEFT)

    def _prompt(self) -> None:
        self.console.set_prompt(f"{self.handle}> ")

    def _client(self, conversation: PeerProtocol) -> str:
        return conversation.peer_handle or f"the client at {conversation.address}"

    # --- IServerOperator --------------------------------------------------------

    def conversation_started(self, conversation: PeerProtocol) -> None:
        if self.state is not ServerState.WAITING:
            # It slipped in while the server was stopping.
            conversation.quit(self.handle)
            return
        self.conversation = conversation
        self.state = ServerState.CHATTING
        self.console.show(f"Established connection with {conversation.address}.")

    def message_received(self, message: Message) -> None:
        self.console.show(str(message))

    def conversation_ended(self, ending: Ending) -> None:
        conversation, self.conversation = self.conversation, None
        if conversation is None:
            # The one that slipped in while stopping.
            return
        line = ending_line(ending, conversation.peer_handle, f"the client at {conversation.address}")
        self.console.show(line)
        if self.state is ServerState.CHATTING:
            self.state = ServerState.WAITING
            self.console.show(f"Waiting for the next client on port {self.port_number}.")
        elif self._over is not None:
            self._over.callback(None)

    def turned_away(self, address: str) -> None:
        busy_with = self._client(self.conversation) if self.conversation is not None else "someone"
        self.console.show(f"Turned away a client at {address}: busy with {busy_with}.")

    # --- IConsoleApp ------------------------------------------------------------

    def line_entered(self, line: str) -> None:
        if self.state in (ServerState.STOPPING, ServerState.STOPPED):
            return
        typed = Typed.parse(line)
        conversation = self.conversation
        if typed.said is Said.QUIT:
            if conversation is not None:
                conversation.quit(self.handle)
            else:
                self.console.show("No one to leave: waiting for a client.  Ctrl+C stops the server.")
        elif typed.said is Said.TOO_LONG:
            self.console.show(typed.refusal())
        elif typed.said is Said.MESSAGE:
            if conversation is not None:
                conversation.send_message(self.handle, typed.text)
            else:
                self.console.show("Not sent: no one is connected yet.")
        self._prompt()

    def interrupted(self) -> None:
        if self.state is ServerState.STOPPING:
            # Asked twice: stop waiting for the client to take the quit.
            if self.conversation is not None:
                self.conversation.abort()
        elif self.state is not ServerState.STOPPED:
            self.stop()

    def input_ended(self) -> None:
        if self.state in (ServerState.WAITING, ServerState.CHATTING):
            self.stop()


class ClientState(enum.Enum):
    NAMING = "choosing a handle"
    CHATTING = "chatting"
    LEAVING = "leaving"
    CLOSED = "closed"


@implementer(IConsoleApp, IPeerListener)
class PairClient:
    """
    The person running C{connect}, from the first prompt to the exit status,
    which C{finished} fires with once the console is closed.
    """

    def __init__(
        self,
        connection: PeerProtocol,
        server: str,
        open_console: OpenConsole,
        handle: Handle | None = None,
    ) -> None:
        self.connection = connection
        #: Where the server is, as the user named it.
        self.server = server
        self.handle = handle
        self.state = ClientState.NAMING
        self.finished: Deferred[int] = Deferred()
        self.console = open_console(self)

    def start(self) -> None:
        self.console.show(f"Connected to {self.server}.  {QUIT} leaves.")
        if self.handle is None:
            self.console.set_prompt(HANDLE_PROMPT)
        else:
            self._chat()
        self.connection.start(self)

    def _chat(self) -> None:
        self.state = ClientState.CHATTING
        self._prompt()

    def _prompt(self) -> None:
        self.console.set_prompt(f"{self.handle}> ")

    def _leave(self) -> None:
        self.state = ClientState.LEAVING
        self.connection.quit(self.handle)

    # --- IPeerListener ----------------------------------------------------------

    def conversation_started(self, conversation: PeerProtocol) -> None:
        """Connected before this began: C{start} has said so."""

    def message_received(self, message: Message) -> None:
        if self.state is not ClientState.CLOSED:
            self.console.show(str(message))

    def conversation_ended(self, ending: Ending) -> None:
        if self.state is ClientState.CLOSED:
            return
        self.state = ClientState.CLOSED
        status = LEFT if ending in (Ending.WE_QUIT, Ending.PEER_QUIT) else DISCONNECTED
        self.console.show(ending_line(ending, self.connection.peer_handle, "the server"))
        self.console.close().addBoth(lambda _: self.finished.callback(status))

    # --- IConsoleApp ------------------------------------------------------------

    def line_entered(self, line: str) -> None:
        if self.state is ClientState.NAMING:
            self._name(line)
        elif self.state is ClientState.CHATTING:
            self._say(line)

    def _name(self, line: str) -> None:
        if line.strip() == QUIT:
            self._leave()
            return
        try:
            self.handle = Handle.parse(line)
        except HandleError as e:
            self.console.show(str(e))
            self.console.set_prompt(HANDLE_PROMPT)
            return
        self._chat()

    def _say(self, line: str) -> None:
        assert self.handle is not None
        typed = Typed.parse(line)
        if typed.said is Said.QUIT:
            self._leave()
            return
        if typed.said is Said.TOO_LONG:
            self.console.show(typed.refusal())
        elif typed.said is Said.MESSAGE:
            self.connection.send_message(self.handle, typed.text)
        self._prompt()

    def interrupted(self) -> None:
        if self.state is ClientState.LEAVING:
            # Asked twice: stop waiting for the quit to be written.
            self.connection.abort()
        elif self.state is not ClientState.CLOSED:
            self._leave()

    def input_ended(self) -> None:
        if self.state in (ClientState.NAMING, ClientState.CHATTING):
            self._leave()
