"""
The terminal client: the server's conversation on one side, the user's
console on the other.

L{ChatClient} shows what the server sends and gives it what the user types,
one line per prompt.  The only words it reads are the ones that end a
session: C{logout} (or its synonym C{\\quit}) at the command prompt, Ctrl+C
and Ctrl+D anywhere, and the end of piped input.  Leaving always goes
through the server's own C{logout} when the user is logged in, so the server
records it like any other logout:

    LOGGING_IN --(Command: prompt)--> CHATTING
        |                               |
        +---(logout, \\quit, Ctrl+C, Ctrl+D, end of input)---> LEAVING
        |                                                         |
        +---(Username: asked again, in a script)---------------> LEAVING
                                                                  |
    (connection closed, from any state) -----------------------> CLOSED

A script (input that is not typed by a person) cannot read the server's
answers: once the server asks for the username again, the login was refused
(a wrong password, a second session, a busy server), and the lines that
follow were meant for a session that does not exist, the next of them
perhaps a password that would go out as a username.  So the client closes
instead of sending them.  A person at a terminal just tries again.

The exit status says how it ended: 0 after the user left, 1 when the server
closed the connection or it was lost, refused a script's login, or a
script ended before logging in.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from chat.cli import DISCONNECTED, LEFT
from chat.client.protocol import ChatClientProtocol, IServerListener, Prompt, PromptKind
from chat.terminal import IConsole, IConsoleApp

QUIT = "\\quit"

#: What is typed at these prompts is how to log in: never in the history.
_LOGIN = (PromptKind.USERNAME, PromptKind.PASSWORD)


class Phase(enum.Enum):
    LOGGING_IN = "logging in"
    CHATTING = "chatting"
    #: The user asked to leave: logging out, then waiting for the close.
    LEAVING = "leaving"
    CLOSED = "closed"


@implementer(IConsoleApp, IServerListener)
class ChatClient:
    """
    One session of the terminal client, from the first prompt to the exit
    status, which C{finished} fires with once the console is closed.
    """

    #: Seconds to wait for the server to close the connection after logout.
    goodbye_timeout = 5.0

    def __init__(
        self,
        connection: ChatClientProtocol,
        open_console: Callable[[IConsoleApp], IConsole],
        clock: IReactorTime,
        timestamps: bool = False,
    ) -> None:
        self.connection = connection
        self.clock = clock
        self.timestamps = timestamps
        self.phase = Phase.LOGGING_IN
        #: The server's prompt that is waiting for a line; None while a line
        #: sent is not yet answered.
        self.prompt: Prompt | None = None
        self.finished: Deferred[int] = Deferred()
        self._goodbye: IDelayedCall | None = None
        #: A line went to the server at a login prompt: a Username: prompt
        #: now means that it was refused.
        self._tried_login = False
        #: The exit status once the connection closes while LEAVING.
        self._leaving_status = LEFT
        self.console = open_console(self)

    def start(self) -> None:
        self.connection.start(self)

    # --- IServerListener --------------------------------------------------------

    def line_received(self, text: str) -> None:
        if self.timestamps:
            stamp = time.strftime("%H:%M", time.localtime(self.clock.seconds()))
            text = f"[{stamp}] {text}"
        self.console.show(text)

    def prompt_received(self, prompt: Prompt) -> None:
        if self.phase is Phase.LEAVING:
            self._leave_at(prompt)
            return
        if self.phase is Phase.LOGGING_IN:
            if prompt.kind is PromptKind.COMMAND:
                self.phase = Phase.CHATTING
            elif prompt.kind is PromptKind.USERNAME and self._tried_login and not self.console.interactive:
                self._refused(prompt)
                return
        self.prompt = prompt
        self.console.set_prompt(prompt.text, secret=prompt.secret, history=prompt.kind not in _LOGIN)

    def connection_lost(self, reason: Failure) -> None:
        if self.phase is Phase.CLOSED:
            return
        if self._goodbye is not None and self._goodbye.active():
            self._goodbye.cancel()
        if self.phase is Phase.LEAVING:
            status, message = self._leaving_status, "Disconnected."
        elif reason.check(ConnectionDone):
            status, message = DISCONNECTED, "Disconnected by the server."
        else:
            status, message = DISCONNECTED, "Disconnected: the connection was lost."
        self.phase = Phase.CLOSED
        self.console.show(message)
        self.console.close().addBoth(lambda _: self.finished.callback(status))

    # --- IConsoleApp ------------------------------------------------------------

    def line_entered(self, line: str) -> None:
        if self.phase in (Phase.LEAVING, Phase.CLOSED):
            return
        prompt, self.prompt = self.prompt, None
        word = line.strip()
        if word == QUIT and not (prompt is not None and prompt.secret):
            self._leave(prompt)
        elif word.lower() == "logout" and prompt is not None and prompt.kind is PromptKind.COMMAND:
            self._leave(prompt)
        else:
            self.connection.send_line(line)
            if prompt is not None and prompt.kind in _LOGIN:
                self._tried_login = True

    def interrupted(self) -> None:
        if self.phase is Phase.LEAVING:
            # Asked twice: stop waiting for the goodbye.
            self.connection.abort()
        elif self.phase is not Phase.CLOSED:
            prompt, self.prompt = self.prompt, None
            self._leave(prompt)

    def input_ended(self) -> None:
        if self.phase not in (Phase.LEAVING, Phase.CLOSED):
            if self.phase is Phase.LOGGING_IN and not self.console.interactive:
                # A script that ran out before logging in did not do its job.
                self.console.show("The input ended before logging in.")
                self._leaving_status = DISCONNECTED
            prompt, self.prompt = self.prompt, None
            self._leave(prompt)

    # --- leaving ----------------------------------------------------------------

    def _refused(self, prompt: Prompt) -> None:
        """A script's login was refused: send nothing more, and fail."""
        self.console.show("Login refused; the rest of the script is not sent.")
        self._leaving_status = DISCONNECTED
        self._leave(prompt)

    def _leave(self, prompt: Prompt | None) -> None:
        """
        End the session: log out at the command prompt, or close before
        logging in.  Without a prompt the server is still answering the last
        line, and its next prompt decides.
        """
        self.phase = Phase.LEAVING
        self._goodbye = self.clock.callLater(self.goodbye_timeout, self.connection.abort)
        if prompt is not None:
            self._leave_at(prompt)

    def _leave_at(self, prompt: Prompt) -> None:
        if prompt.kind is PromptKind.COMMAND:
            self.connection.send_line("logout")
        elif prompt.kind is PromptKind.INTRO:
            # An empty intro keeps the current one; the command prompt follows.
            self.connection.send_line("")
        else:
            self.connection.close()
