"""
One user's conversation with the server, as a state machine.

A L{Session} knows nothing of bytes, sockets or wording: it receives decoded
lines (or commands an edge parsed) and emits events (L{chat.server.events})
through its L{IEdge}, which renders them: the TCP edge as the text of the
classic protocol, the WebSocket edge as JSON.  Its states are a L{State};
each that reads a line has one handler:

    USERNAME -> PASSWORD -> (AUTHENTICATING) -> (WELCOMING) -> COMMAND <-> INTRO
                                                                  |
                                                           (BUSY) + CLOSED

States in parentheses wait for a Deferred (the guard, a password check, the
store); while in them the session asks its edge to stop delivering input,
so lines a client sends ahead (a pasted session, a script) are answered in
order.  Commands are run by the handlers the command table names
(L{commands.COMMANDS}).

Messages to the user do not pass through here: the edge is the participant
the service delivers to (L{IParticipant}), and the session only tells it
when deliveries start (after the welcome) and stop.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from chat.server import commands, textrules
from chat.server.auth import LoginBusy, ResumeToken, TokenRefused, loggable_name
from chat.server.context import ServerContext
from chat.server.events import (
    Arrived,
    Ask,
    ConversationHistory,
    Conversations,
    Delivery,
    Error,
    Event,
    Failed,
    Fault,
    Goodbye,
    Help,
    HelpTopic,
    History,
    LoginRefused,
    Note,
    Notice,
    NotInRoom,
    Offline,
    RateLimited,
    Reason,
    Receipt,
    Refusal,
    Roster,
    SessionInfo,
    StoredMessage,
    UnknownRoom,
    UnknownUsers,
    Unread,
    Welcome,
)
from chat.server.interfaces import AlreadyOnline, IAdmin, IChatUser, IEdge, Joining, Unavailable
from chat.server.limits import TokenBucket
from chat.server.quietlog import QuietLog
from chat.server.realm import SelfMessage
from chat.server.rooms import NoSuchRoom, NotAMember
from chat.server.service import UnknownUser

T = TypeVar("T")

log = Logger()


class State(enum.Enum):
    """
    Where a session is, and what that means for its edge.  What each state
    means is set on it once, below, as plain attributes: a state is looked
    at for every line, and an enum's properties and hashing are Python
    code.
    """

    USERNAME = "username"
    PASSWORD = "password"
    AUTHENTICATING = "authenticating"
    WELCOMING = "welcoming"
    COMMAND = "command"
    INTRO = "intro"
    BUSY = "busy"
    CLOSED = "closed"

    #: The prompt an edge may show in this state.
    ask: Ask | None
    #: Asking for the name or the password: a login may be given.
    logging_in: bool
    #: The user is in (the session may be waiting for the store).
    logged_in: bool
    #: Waiting for a Deferred: input is held meanwhile.
    waiting: bool
    #: The L{Session} method that reads a line in this state.
    line_handler: str
    #: The session has ended: nothing more is read or said.
    closed: bool
    #: What a line typed in this state must not hold (a password may hold
    #: more than a command may), as L{textrules} says: the fault, or None.
    text_rule: Callable[[str], Fault | None]


for _state, _ask in (
    (State.USERNAME, Ask.USERNAME),
    (State.PASSWORD, Ask.PASSWORD),
    (State.AUTHENTICATING, None),
    (State.WELCOMING, None),
    (State.COMMAND, Ask.COMMAND),
    (State.INTRO, Ask.INTRO),
    (State.BUSY, None),
    (State.CLOSED, None),
):
    _state.ask = _ask
    _state.logging_in = _state in (State.USERNAME, State.PASSWORD)
    _state.logged_in = _state in (State.WELCOMING, State.COMMAND, State.INTRO, State.BUSY)
    _state.waiting = _state in (State.AUTHENTICATING, State.WELCOMING, State.BUSY)
    _state.closed = _state is State.CLOSED
    _state.text_rule = textrules.refused_line if _state is State.PASSWORD else textrules.refused


def _refused_text(text: str, shown: bool = True) -> Failed | None:
    """
    Why C{text} may not be used, if it may not: any line must be text
    without controls; one that others may see (not a password) must also
    follow L{textrules}.
    """
    fault = textrules.refused(text) if shown else textrules.refused_line(text)
    return None if fault is None else Failed(fault)


SERVER_ERROR = Failed(Fault.SERVER_ERROR)

#: Stored messages a session keeps unacknowledged at most: a client that
#: never acknowledges cannot make the server (or Redis) keep them forever;
#: beyond this the oldest count as seen.
MAX_UNACKED = 1000

#: Private messages of one session waiting for the store at once (in
#: flight): a client that sends several before the first is answered has
#: them stored together, its answers in order; past this, its input waits.
MAX_IN_FLIGHT = 16

_NONE: frozenset[str] = frozenset()


@attrs.define(eq=False)
class _Flight:
    """A private message waiting for the store: its answer, once known."""

    answer: Event | None = None


class Session(TimeoutMixin):
    """
    The state machine of one connection, from the username prompt to the
    goodbye.  One instance per connection; the avatar it gets at login is
    how it acts on the shared service.
    """

    def __init__(self, edge: IEdge, context: ServerContext) -> None:
        self.edge = edge
        self.context = context
        self.state = State.USERNAME
        self.name: str | None = None
        self.avatar: IChatUser | None = None
        self._logout: Callable[[], None] | None = None
        self._bucket: TokenBucket | None = None
        settings = context.settings
        self._prelogin = TokenBucket.full(
            settings.prelogin_rate, settings.prelogin_burst, context.clock.seconds()
        )
        self._refused = 0
        #: Waiting for the session to end (L{goodbye}); made when someone waits.
        self._closed: list[Deferred[None]] | None = None
        #: Logging in with a resume token: the realm lets it take over.
        self.resuming = False
        #: Why the session ended, once it has (a goodbye's reason), for the log.
        self._why: str | None = None
        #: When the user logged in.
        self._since = 0.0
        #: When the user last sent a command (for an admin's C{sessions}).
        self._active = 0.0
        #: The rooms (lower case) a terminal was told at login it had not read.
        #: (The empty values here are shared, not made per session: a server
        #: holds thousands of sessions, most with none.)
        self._unread_rooms: frozenset[str] = _NONE
        #: Whether the user may use the admins' commands (the others are
        #: told they do not exist); known at login.
        self.admin = False
        #: Stored messages shown to the user and still in the store: they
        #: leave it once the user has shown they got them (L{_acknowledge}).
        self._unacked: Sequence[StoredMessage] = ()
        #: Private messages waiting for the store, in the order sent (L{_fly}).
        #: (A list, made when the first flies: at most L{MAX_IN_FLIGHT} long,
        #: and an empty deque costs 760 bytes a session.)
        self._flights: list[_Flight] | None = None
        #: A command that came while messages were in flight: run once they land.
        self._after_flights: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<Session {self.log_name} from {self.edge.peer_host} in {self.state}>"

    @property
    def quiet(self) -> QuietLog:
        """The server's log of things that repeat (refusals, failures): a line a minute of each."""
        return self.context.service.quiet

    @property
    def log_name(self) -> str:
        """The user's name as the log may show it: never a password typed as a name."""
        if self.name is None:
            return "-"
        return loggable_name(self.name, self.context.service.users)

    # --- edge -> session --------------------------------------------------------

    def start(self) -> None:
        self.context.service.attach(self.edge)
        self.setTimeout(self.context.settings.login_timeout)
        self.prompt()

    @property
    def logged_in(self) -> bool:
        """Whether the user has logged in (and the session has not ended)."""
        return self.avatar is not None and self.state is not State.CLOSED

    @property
    def settled(self) -> bool:
        """
        Whether every line taken so far has been answered: nothing waits
        for the store or a login, no message is in flight.  A client that
        ended its input (C{printf ... | nc -N}) is closed then, not before.
        """
        return self.state is not State.CLOSED and not self.state.waiting and not self._flights

    def admit_input(self) -> bool:
        """
        Count one unit of input (a line, a message), before the edge does
        anything with it.  Before login each is counted against a small
        budget, and past it the connection ends: the cheapest state to be in
        must not let a flood of lines cost replies, memory or log.  After
        login the command rate applies instead (L{_admit}).  False when the
        input must be dropped.
        """
        if self.state.closed:
            return False
        if self.avatar is not None:
            return True
        if self._prelogin.take(self.context.clock.seconds()):
            return True
        self.quiet.warn(
            "connections closed: too much input before login",
            "closed the connection from {host}: too much input before login",
            self.edge.peer_host,
        )
        self.end(Goodbye(Reason.FLOOD))
        return False

    def line_received(self, text: str) -> None:
        """One decoded line from the user, without its line ending."""
        state = self.state
        if state.closed:
            return
        if self._unacked and not self.edge.acknowledges and state in (State.COMMAND, State.INTRO):
            # An edge whose client cannot acknowledge (a terminal): a line
            # typed after the messages were shown is the sign they arrived.
            self._acknowledge(self._unacked)
            state = self.state
        fault = state.text_rule(text)
        if fault is not None:
            self.input_error(Failed(fault))
            return
        try:
            getattr(self, state.line_handler)(text)
        except Exception:
            log.failure("error handling a line in {session!r}", session=self)
            self._server_error()

    def login(self, username: str, password: str) -> None:
        """
        Both answers of the login at once, as an edge with a login form
        sends them: the password is only given if the username was taken.
        """
        self.line_received(username)
        if self.state is State.PASSWORD:
            self.line_received(password)
            if self.state is State.PASSWORD:
                # The password itself was refused (its characters): the
                # login form starts again, as a refused login does.
                self.name = None
                self.state = State.USERNAME
                self.prompt()

    def resume(self, token: str) -> None:
        """
        Log in with a resume token instead of a password (an edge whose
        client lost its connection and came back).  A session of the same
        user that is still open is ended: this is the same person.
        """
        if self.state is not State.USERNAME:
            return
        self.state = State.AUTHENTICATING
        self.resuming = True
        d = self.context.portal.login(ResumeToken(token), Joining(self.edge, takeover=True), IChatUser)
        d.addCallbacks(self._logged_in, self._resume_failed)
        if self.state is State.AUTHENTICATING or self.state is State.WELCOMING:
            self.edge.pause_input()

    def _resume_failed(self, f: Failure) -> None:
        self.resuming = False
        if self.state is State.CLOSED:
            return
        if isinstance(f.value, TokenRefused):
            reason = Refusal.REUSED if f.value.reason == "reused" else Refusal.EXPIRED
            self.quiet.info(
                "resumes refused",
                "refused a resume from {host}: {reason}",
                self.edge.peer_host,
                reason=reason.value,
            )
        else:
            log.failure("resume failed", f)
            reason = Refusal.SERVER_ERROR
        self.state = State.USERNAME
        self.say(LoginRefused(reason, ""))
        self.prompt()
        self.edge.resume_input()

    def command(self, command: commands.Command) -> None:
        """
        A command already parsed by the edge (a structured request), handled
        as if its line had been typed at the C{Command:} prompt.
        """
        if self.state is not State.COMMAND:
            self.input_error(Failed(Fault.BUSY))
            return
        multiline = getattr(command, "multiline", False)
        for field in attrs.fields(type(command)):
            value = getattr(command, field.name)
            for text in value if isinstance(value, tuple) else (value,):
                if not isinstance(text, str):
                    continue
                if multiline and field.name == "text":
                    fault = textrules.refused_message(text)
                    refused = None if fault is None else Failed(fault)
                else:
                    refused = _refused_text(text)
                if refused is not None:
                    self.input_error(refused)
                    return
        try:
            self._run(command)
        except Exception:
            log.failure("error handling a command in {session!r}", session=self)
            self._server_error()

    def active(self) -> None:
        """
        The user is there, though they sent no command (a page that sees
        its reader scroll or type): the idle timer starts again.  Counted
        against the flood limit like a command.
        """
        if self.state in (State.COMMAND, State.INTRO, State.BUSY):
            # No answer, even when refused: the client expects none, and
            # would take it for the answer to its next request.
            self._admit(answer=False)

    def read(self, named: Sequence[str], until: float | None = None) -> None:
        """
        The client has shown these conversations (C{everyone}, C{#room},
        C{@user}) up to C{until}: their unread counts start again from there,
        on every node and after a restart.  No answer.
        """
        if self.avatar is None or self.state is State.CLOSED:
            return
        if not self._admit(answer=False):
            return
        self.avatar.mark_read(named, until).addErrback(self._not_marked)

    def typing(self, named: str) -> None:
        """
        The user is typing in the conversation C{named}: the others in it
        who show such notices are told.  No answer, even when refused (an
        unknown conversation, one they may not write in, the flood limit).
        """
        if self.avatar is None or self.state is State.CLOSED:
            return
        if not self._admit(answer=False):
            return
        self.avatar.typing(named)

    def list_conversations(self) -> None:
        """The user's conversations, with their unread counts (a page's sidebar)."""
        if self.avatar is None or self.state is State.CLOSED:
            return
        if not self._admit():
            return

        def failed(f: Failure) -> None:
            self._store_failed(f, "could not list the conversations of {user}", Fault.HISTORY_UNAVAILABLE)

        self.avatar.conversations().addCallbacks(self._listed, failed)

    def _listed(self, listed: Conversations) -> None:
        if self.state is not State.CLOSED:
            self.say(listed)

    def acknowledge(self, ids: Sequence[str]) -> None:
        """
        The client has the stored messages with these ids (an edge whose
        client says so, the web page): they may leave the store.
        """
        wanted = set(ids)
        done = [m for m in self._unacked if m.delivery.id in wanted or not m.delivery.id]
        if done:
            self._acknowledge(done)

    def _acknowledge(self, messages: Sequence[StoredMessage]) -> None:
        if self.avatar is None:
            return
        gone = {id(m) for m in messages}
        self._unacked = [m for m in self._unacked if id(m) not in gone]
        self.avatar.shown(messages).addErrback(self._ack_failed)

    def _ack_failed(self, f: Failure) -> None:
        # They stay in the store and come again at the next login.
        if not f.check(Unavailable):
            self.quiet.failure(
                "acknowledging stored messages",
                "could not remove messages {user} has seen",
                f,
                user=self.name,
            )

    def _shown_stored(self, messages: Sequence[StoredMessage]) -> None:
        """Keep C{messages} until acknowledged; beyond a bound, the oldest count as seen."""
        self._unacked = [*self._unacked, *messages]
        excess = len(self._unacked) - MAX_UNACKED
        if excess > 0:
            self._acknowledge(self._unacked[:excess])

    def input_done(self) -> None:
        """
        The edge has handed over every line of one read: deliver the
        broadcasts they made, together.
        """
        self.context.service.flush()

    def input_error(self, error: Error) -> None:
        """Input the edge could not use (or the session refused): say so, ask again."""
        if self.state is State.CLOSED:
            return
        self.reply(error)

    def connection_lost(self) -> None:
        self.state = State.CLOSED
        self._stop_deliveries()
        self.setTimeout(None)
        self.context.service.detach(self.edge)
        self._leave()
        waiters, self._closed = self._closed, None
        for d in waiters or ():
            d.callback(None)

    def about(self) -> SessionInfo | None:
        """This session as an admin sees it, once logged in."""
        if self.avatar is None or self.state is State.CLOSED:
            return None
        edge = self.edge
        return SessionInfo(
            self.avatar.name, edge.kind, edge.peer_host, self.context.service.node, self._since, self._active
        )

    # --- output helpers ---------------------------------------------------------

    def prompt(self) -> None:
        ask = self.state.ask
        if ask is not None:
            self.edge.send_prompt(ask)

    def say(self, event: Event) -> None:
        self.context.service.counters.said(event)
        self.edge.send(event)

    def reply(self, event: Event) -> None:
        """Say C{event}, then prompt for the current state, in one write."""
        self.context.service.counters.said(event)
        self.edge.send(event, self.state.ask)

    def end(self, event: Event) -> None:
        """Say C{event} and close; nothing more is read."""
        if self._why is None:
            self._why = event.reason.value if isinstance(event, Goodbye) else "refused"
        self.say(event)
        self.state = State.CLOSED
        self._stop_deliveries()
        self.setTimeout(None)
        self._leave()
        self.edge.close()

    def _stop_deliveries(self) -> None:
        self.edge.stop_deliveries()

    def _leave(self) -> None:
        logout, self._logout = self._logout, None
        if logout is not None:
            if not self.edge.acknowledges and self.avatar is not None:
                self._read_while_here(self.avatar)
            logout()
            self.context.service.counters.logouts[self._why or "connection_lost"] += 1
            log.info(
                "{user} logged out from {host} over {edge}{on_node} after {seconds:.0f} s: {reason}",
                user=self.name,
                host=self.edge.peer_host,
                edge=self.edge.kind,
                node=self.context.service.node,
                on_node=_on_node(self.context.service.node),
                seconds=self.context.clock.seconds() - self._since,
                reason=self._why or "connection lost",
            )

    def _server_error(self) -> None:
        if self.state is not State.CLOSED:
            self.reply(SERVER_ERROR)

    def _wait(self, d: Deferred[T], done: Callable[[T], None], failed: Callable[[Failure], None]) -> None:
        """
        Finish a command once C{d} fires (the store confirmed a write),
        holding further input until then.  A Deferred that has already
        fired completes at once, without pausing.
        """
        if d.called:
            d.addBoth(self._complete, done, failed)
            self.prompt()
            return
        self.state = State.BUSY
        self.edge.pause_input()

        def resume(result: T | Failure) -> None:
            self._complete(result, done, failed)
            if self.state is State.BUSY:
                self.state = State.COMMAND
                self.prompt()
                self.edge.resume_input()

        d.addBoth(resume)

    def _complete(
        self, result: T | Failure, done: Callable[[T], None], failed: Callable[[Failure], None]
    ) -> None:
        if self.state is State.CLOSED:
            return
        try:
            if isinstance(result, Failure):
                failed(result)
            else:
                done(result)
        except Exception:
            log.failure("error finishing a command in {session!r}", session=self)
            self.say(SERVER_ERROR)

    # --- login ------------------------------------------------------------------

    def line_USERNAME(self, text: str) -> None:
        name = text.strip()
        if not name:
            self.prompt()
            return
        if len(name.split()) > 1:
            self.reply(Failed(Fault.BAD_USERNAME))
            return
        blocked = self.context.guard.blocked_for(name, self.edge.peer_host)
        if blocked:
            self._refuse_blocked(name, blocked)
            return
        self.name = name
        self.state = State.PASSWORD
        self.prompt()

    def line_PASSWORD(self, text: str) -> None:
        name = self.name
        assert name is not None
        guard, host = self.context.guard, self.edge.peer_host
        blocked = guard.blocked_for(name, host)
        if blocked:
            # Blocked by other connections while this one typed the password.
            self._refuse_blocked(name, blocked)
            return
        self.state = State.AUTHENTICATING
        credentials = UsernamePassword(name.encode("utf-8"), text.encode("utf-8"))
        guard.begin(name, host).addCallback(self._check_password, name, credentials).addErrback(
            self._login_crashed
        )
        if self.state in (State.AUTHENTICATING, State.WELCOMING):
            # The guard (across nodes), a password hash or the store is
            # still working: hold the lines the client sent ahead until the
            # login is complete.
            self.edge.pause_input()

    def _check_password(self, allowed: bool, name: str, credentials: UsernamePassword) -> None:
        if not allowed:
            # As many checks as --max-attempts are running or failed already,
            # or the guard learnt of a block (set on another node).
            if self.state is State.CLOSED:
                return
            blocked = self.context.guard.blocked_for(name, self.edge.peer_host)
            if blocked:
                self._refuse_blocked(name, blocked)
                return
            self.say(LoginRefused(Refusal.CHECKING, name))
            self.state = State.USERNAME
            self.prompt()
            self.edge.resume_input()
            return
        d = self.context.portal.login(credentials, Joining(self.edge, takeover=False), IChatUser)
        d.addCallbacks(self._logged_in, self._login_failed)

    def _refuse_blocked(self, name: str, seconds: float) -> None:
        self.quiet.info(
            "blocked logins refused",
            "refused {user} from {host}: blocked",
            self.edge.peer_host,
            user=loggable_name(name, self.context.service.users),
        )
        self.end(LoginRefused(Refusal.BLOCKED, name, math.ceil(seconds)))

    def _logged_in(self, result: tuple[Any, IChatUser, Callable[[], None]]) -> None:
        try:
            self._start_session(*result)
        except Exception:
            self._login_crashed(Failure())

    def _start_session(self, interface: Any, avatar: IChatUser, logout: Callable[[], None]) -> None:
        if not self.resuming:
            # A token proves an earlier login, not this password: it does
            # not clear what the guard knows of this address.
            self.context.guard.succeeded(avatar.name, self.edge.peer_host)
        if self.state is State.CLOSED:
            # The connection went away while the password was being checked.
            logout()
            return
        self.avatar = avatar
        self.admin = IAdmin.providedBy(avatar)
        self.name = avatar.name  # a resumed session was never asked for it
        self._logout = logout
        self.state = State.WELCOMING
        self._since = self._active = self.context.clock.seconds()
        self.context.service.counters.logins["resumed" if self.resuming else "ok"] += 1
        log.info(
            "{user} logged in from {host} over {edge}{on_node}{how}",
            user=avatar.name,
            host=self.edge.peer_host,
            edge=self.edge.kind,
            node=self.context.service.node,
            on_node=_on_node(self.context.service.node),
            resumed=self.resuming,
            how=" (resumed)" if self.resuming else "",
        )
        self.setTimeout(self.context.settings.idle_timeout)
        now = self.context.clock.seconds()
        settings = self.context.settings
        if not settings.exempt.covers(self.edge.peer_host):
            self._bucket = TokenBucket.full(settings.rate, settings.burst, now)
        self.say(Welcome(avatar.name, IAdmin.providedBy(avatar)))
        avatar.offline_messages().addBoth(self._welcome)

    def _welcome(self, offline: list[StoredMessage] | Failure) -> None:
        """Show what waited for the user, then what arrived meanwhile."""
        if self.state is State.CLOSED:
            return
        try:
            if isinstance(offline, Failure):
                if not offline.check(Unavailable):
                    self.quiet.failure(
                        "loading offline messages",
                        "could not load offline messages for {user}",
                        offline,
                        user=self.name,
                    )
                self.say(Notice(Note.OFFLINE_NOT_LOADED))
            elif offline:
                self._show_offline(offline)
        except Exception:
            log.failure("could not show offline messages to {user}", user=self.name)
        avatar = self.avatar
        if avatar is None or not self.context.service.rooms.of(avatar.name):
            self._welcomed()
            return
        # Then how much is unread in their rooms (not one offline message each).
        avatar.unread().addCallbacks(self._show_unread, self._unread_failed).addErrback(
            lambda f: log.failure("could not show unread counts to {user}", f, user=self.name)
        )

    def _show_unread(self, unread: Unread) -> None:
        if self.state is State.CLOSED:
            return
        if unread.rooms:
            self._unread_rooms = frozenset(name.lower() for name, _ in unread.rooms)
            self.say(unread)
        self._welcomed()

    def _unread_failed(self, f: Failure) -> None:
        if not f.check(Unavailable):
            self.quiet.failure("unread counts", "could not count what {user} has not read", f, user=self.name)
        if self.state is not State.CLOSED:
            self._welcomed()

    def _show_offline(self, messages: list[StoredMessage]) -> None:
        self.say(Offline(tuple(messages)))
        self._shown_stored(messages)

    def _welcomed(self) -> None:
        self.edge.start_deliveries()
        self.state = State.COMMAND
        self.prompt()
        self.edge.resume_input()

    def _login_failed(self, f: Failure) -> None:
        try:
            self._refused_login(f)
        except Exception:
            self._login_crashed(Failure())

    def _refused_login(self, f: Failure) -> None:
        name = self.name
        assert name is not None
        guard, host = self.context.guard, self.edge.peer_host
        # Count the outcome even if the connection is gone: hanging up right
        # after sending a guess must not make the guess free.
        blocked: Deferred[float]
        if f.check(UnauthorizedLogin):
            self.quiet.info("failed logins", "failed login for {user} from {host}", host, user=self.log_name)
            blocked = guard.failed(name, host)
            reason = Refusal.INVALID
        elif f.check(AlreadyOnline):
            # The password was right; refusing a second session is no failure.
            guard.succeeded(name, host)
            blocked = succeed(0.0)
            reason = Refusal.ALREADY_ONLINE
        else:
            guard.abandoned(name, host)
            blocked = succeed(0.0)
            if f.check(LoginBusy):
                reason = Refusal.BUSY
            elif f.check(Unavailable):
                self.quiet.warn(
                    "logins refused: store unavailable",
                    "login of {user} refused: {why}",
                    host,
                    user=self.log_name,
                    why=f.getErrorMessage(),
                )
                reason = Refusal.UNAVAILABLE
            else:
                log.failure("login of {user} failed", f, user=self.log_name)
                reason = Refusal.SERVER_ERROR
        # A cluster's guard counts the failure across nodes first.
        blocked.addCallback(lambda seconds: self._after_refusal(name, reason, seconds))
        blocked.addErrback(self._login_crashed)

    def _after_refusal(self, name: str, reason: Refusal, blocked: float) -> None:
        if self.state is State.CLOSED:
            # Hung up before the answer: the attempt counts all the same.
            self.context.service.counters.logins[reason.value] += 1
            return
        self.state = State.USERNAME
        self.say(LoginRefused(reason, name))
        if blocked:
            self._refuse_blocked(name, blocked)
            return
        self.prompt()
        self.edge.resume_input()

    def _login_crashed(self, f: Failure) -> None:
        log.failure("error completing a login in {session!r}", f, session=self)
        if self.state is not State.CLOSED:
            self.end(Goodbye(Reason.SERVER_ERROR))

    # --- commands ---------------------------------------------------------------

    def _admit(self, answer: bool = True) -> bool:
        """
        Count one command against the flood limit.  A refused one is
        answered here, if C{answer} (or, after too many refusals in a row,
        the session is ended) and False returned.
        """
        # The idle timer is not moved per command (a timed call's reset per
        # line): when it fires, it looks at this time (L{timeoutConnection}).
        now = self._active = self.context.clock.seconds()
        bucket = self._bucket
        if bucket is not None and not bucket.take(now):
            self._refused += 1
            if self._refused >= self.context.settings.flood_disconnect:
                self.quiet.warn(
                    "disconnected for flooding",
                    "{user} disconnected for flooding",
                    self.edge.peer_host,
                    user=self.name,
                )
                self.end(Goodbye(Reason.FLOOD))
            elif answer:
                self.reply(RateLimited(self.context.settings.rate))
            return False
        self._refused = 0
        return True

    def line_COMMAND(self, text: str) -> None:
        if not self._admit():
            return
        parsed = commands.parse(text, self.context.settings.limits, self.admin)
        if self._flights and type(parsed) is not commands.Message:
            self._after_landing(lambda: self._answer(parsed))
            return
        self._answer(parsed)

    def _answer(self, parsed: commands.Parsed) -> None:
        run = _HANDLERS.get(type(parsed))
        if run is not None:
            run(self, parsed)
        elif isinstance(parsed, commands.Blank):
            self.prompt()
        else:
            assert not isinstance(parsed, commands.COMMAND_TYPES)
            self.reply(parsed)

    def _dispatch(self, command: commands.Command) -> None:
        """Run C{command} with the handler its entry of the command table names."""
        _HANDLERS[type(command)](self, command)

    def _run(self, command: commands.Command) -> None:
        """Run a parsed command, counting it against the rate like a typed one."""
        if self._admit():
            if self._flights and type(command) is not commands.Message:
                self._after_landing(lambda: self._dispatch(command))
                return
            self._dispatch(command)

    def do_whoelse(self, _: commands.WhoElse) -> None:
        assert self.avatar is not None
        self.reply(Roster(tuple(self.avatar.whoelse())))

    def do_wholast(self, cmd: commands.WhoLast) -> None:
        assert self.avatar is not None
        self.reply(Roster(tuple(self.avatar.wholast(cmd.minutes)), cmd.minutes))

    def do_broadcast(self, cmd: commands.Broadcast | commands.BroadcastTo) -> None:
        assert self.avatar is not None
        avatar = self.avatar
        if isinstance(cmd, commands.Broadcast):
            self.reply(avatar.broadcast(cmd.text))
        else:
            self._send(lambda: avatar.broadcast_to(cmd.recipients, cmd.text))

    def _send(self, send: Callable[..., Receipt | Deferred[Receipt]], *args: Any, fly: bool = False) -> None:
        """
        Send and answer with the receipt.  With C{fly} (a private message)
        a receipt that waits for the store does not hold the input: the
        next messages are sent meanwhile (L{_fly}), and every answer comes
        in the order the messages were typed.
        """
        answer: Event
        try:
            result = send(*args)
        except UnknownUser as e:
            answer = UnknownUsers(e.names, e.suggestions)
        except SelfMessage:
            answer = Failed(Fault.SELF_MESSAGE)
        else:
            if not isinstance(result, Receipt):
                if fly:
                    self._fly(result)
                else:
                    self._wait(result, self.say, self._not_stored)
                return
            # Everyone was online: the usual case, with no Deferred to wait on.
            answer = result
        if self._flights:
            # After the answers of the messages still waiting for the store.
            self._flights.append(_Flight(answer))
            self._land()
        else:
            self.reply(answer)

    def _fly(self, d: Deferred[Receipt]) -> None:
        """
        A private message waiting for the store (another node's user, or
        someone offline): answered once it lands, after those before it.
        A client sending several at once gets them stored together, in one
        write of the store, rather than one write and one answer per turn.
        """
        flight = _Flight()
        if self._flights is None:
            self._flights = []
        self._flights.append(flight)
        if len(self._flights) >= MAX_IN_FLIGHT:
            self.edge.pause_input()

        def landed(result: Receipt | Failure) -> None:
            if isinstance(result, Failure):
                flight.answer = self._store_fault(
                    result, "could not store a message from {user}", Fault.NOT_STORED
                )
            else:
                flight.answer = result
            self._land()

        d.addBoth(landed)

    def _land(self) -> None:
        """Answer the messages that landed, in order; then what came meanwhile."""
        if self.state is State.CLOSED:
            return
        flights = self._flights
        if flights is None:
            return
        try:
            while flights and flights[0].answer is not None:
                answer = flights.pop(0).answer
                assert answer is not None
                self.context.service.counters.said(answer)
                # Each answer with its prompt, as one typed after another gets.
                self.edge.answering_held_line()
                self.edge.send(answer, Ask.COMMAND)
        except Exception:
            log.failure("error answering a message in {session!r}", session=self)
            self.say(SERVER_ERROR)
        if flights:
            if len(flights) < MAX_IN_FLIGHT and self._after_flights is None:
                self.edge.resume_input()
            return
        after, self._after_flights = self._after_flights, None
        if after is not None:
            self.state = State.COMMAND
            self.edge.answering_held_line()
            after()
        # Unless that command waits in turn (or ended the session): its
        # next state (a command, an introduction's line) reads input again.
        if self.state is not State.CLOSED and not self.state.waiting:
            self.edge.resume_input()

    def _after_landing(self, run: Callable[[], None]) -> None:
        """Run C{run} (a command other than a private message) once the messages in flight land."""
        self._after_flights = run
        self.state = State.BUSY
        self.edge.pause_input()

    def _not_stored(self, f: Failure) -> None:
        self._store_failed(f, "could not store a message from {user}", Fault.NOT_STORED)

    def _store_failed(self, f: Failure, what: str, fault: Fault) -> None:
        """Say why a command that needed the store was not done."""
        self.say(self._store_fault(f, what, fault))

    def _store_fault(self, f: Failure, what: str, fault: Fault) -> Failed:
        """Why a command that needed the store was not done (logged once a minute at most)."""
        if f.check(Unavailable):
            # Expected while the store is away, which its health said once:
            # a line a minute at most, no traceback.
            self.quiet.warn(
                "commands refused: store unavailable",
                what + ": {why}",
                self.edge.peer_host,
                user=self.name,
                why=f.getErrorMessage(),
            )
            fault = Fault.UNAVAILABLE
        else:
            self.quiet.failure(what, what, f, user=self.name)
        return Failed(fault)

    def do_message(self, cmd: commands.Message | commands.RoomMessage) -> None:
        assert self.avatar is not None
        avatar = self.avatar
        if type(cmd) is commands.RoomMessage:
            self._in_room(
                lambda: avatar.room_message(cmd.room, cmd.text), "could not keep a message to a room"
            )
            return
        assert type(cmd) is commands.Message
        self._send(avatar.message, cmd.recipient, cmd.text, fly=True)

    # --- rooms --------------------------------------------------------------------

    def _in_room(self, act: Callable[[], Any], what: str, command: str | None = None) -> None:
        """
        Run a command on a room, answering with what it gives (at once, or
        once the store confirmed it), or with why it could not be done.
        """
        try:
            result = act()
        except NoSuchRoom as e:
            self.reply(UnknownRoom(e.name, e.suggestion))
            return
        except NotAMember as e:
            self.reply(NotInRoom(e.name))
            return
        except UnknownUser as e:
            self.reply(UnknownUsers(e.names, e.suggestions, command))
            return
        except SelfMessage:
            self.reply(Failed(Fault.SELF_MESSAGE))
            return
        if isinstance(result, Deferred):

            def failed(f: Failure) -> None:
                self._store_failed(f, what + " of {user}", Fault.NOT_STORED)

            self._wait(result, self.say, failed)
        else:
            self.reply(result)

    def do_join(self, cmd: commands.Join) -> None:
        assert self.avatar is not None
        avatar = self.avatar
        self._in_room(lambda: avatar.join(cmd.room), "could not join a room")

    def do_leave(self, cmd: commands.Leave) -> None:
        assert self.avatar is not None
        avatar = self.avatar
        self._in_room(lambda: avatar.leave(cmd.room), "could not leave a room")

    def do_rooms(self, _: commands.ListRooms) -> None:
        assert self.avatar is not None
        self.reply(self.avatar.rooms())

    def do_members(self, cmd: commands.Members) -> None:
        assert self.avatar is not None
        avatar = self.avatar
        self._in_room(lambda: avatar.members(cmd.room), "could not list a room")

    def do_personalintro(self, cmd: commands.PersonalIntro) -> None:
        if cmd.text is None:
            self.state = State.INTRO
            self.reply(Notice(Note.ASK_INTRO))
            return
        self._save_intro(cmd.text)

    def line_INTRO(self, text: str) -> None:
        self._active = self.context.clock.seconds()
        self.state = State.COMMAND
        text = text.strip()
        if not text:
            self.reply(Notice(Note.INTRO_UNCHANGED))
            return
        checked = commands.intro_text(text, self.context.settings.limits)
        if not isinstance(checked, str):
            self.reply(checked)
            return
        self._save_intro(checked)

    def _save_intro(self, text: str) -> None:
        assert self.avatar is not None

        def failed(f: Failure) -> None:
            self._store_failed(f, "could not save the intro of {user}", Fault.INTRO_NOT_SAVED)

        self._wait(
            self.avatar.set_intro(text),
            lambda _: self.say(Notice(Note.INTRO_SAVED)),
            failed,
        )

    def do_history(self, cmd: commands.ShowHistory) -> None:
        assert self.avatar is not None
        avatar = self.avatar
        name = avatar.name

        def failed(f: Failure) -> None:
            self._store_failed(f, "could not load the history of {user}", Fault.HISTORY_UNAVAILABLE)

        if cmd.conversation is not None:
            conversation = cmd.conversation

            def page() -> Deferred[ConversationHistory]:
                shown = avatar.conversation_history(conversation, cmd.count, cmd.before)
                if cmd.before is None and not self.edge.acknowledges:
                    # A terminal that shows a conversation's newest messages has read it.
                    shown.addCallback(self._read_through)
                return shown

            self._in_room(page, "could not load a conversation", cmd.command)
            return

        def show(messages: list[Delivery]) -> None:
            self.say(History(name, tuple(messages)))

        self._wait(avatar.history(cmd.count), show, failed)

    def do_search(self, cmd: commands.Search) -> None:
        assert self.avatar is not None

        def failed(f: Failure) -> None:
            self._store_failed(f, "could not search for {user}", Fault.HISTORY_UNAVAILABLE)

        found = self.avatar.search(cmd.text, cmd.words, cmd.count, cmd.before)
        self._wait(found, self.say, failed)

    def _read_through(self, page: ConversationHistory) -> ConversationHistory:
        if self.avatar is not None:
            self._unread_rooms = self._unread_rooms - {page.conversation.lower()}
            self.avatar.mark_read([page.conversation]).addErrback(self._not_marked)
        return page

    def _read_while_here(self, avatar: IChatUser) -> None:
        """
        A terminal shows everything as it comes: at its logout, everything
        it showed has been read (everyone's conversation, the user's rooms,
        their direct conversations, the offline messages it showed at
        login), but the rooms whose unread messages it was told of at login
        and that it did not look at.
        """
        now = self.context.service.clock.seconds()
        told = set(self._unread_rooms)

        def read(listed: Conversations) -> Deferred[None]:
            shown = [c.id for c in listed.conversations if c.id.lower() not in told]
            return avatar.mark_read(["everyone", *shown], now)

        reading = avatar.conversations().addCallback(read).addErrback(self._not_marked)
        self.context.service.settling(avatar.name, reading)

    def _not_marked(self, f: Failure) -> None:
        if not f.check(Unavailable):
            self.quiet.failure("read markers", "could not keep what {user} has read", f, user=self.name)

    def do_help(self, cmd: commands.Help) -> None:
        limits = self.context.settings.limits

        def topic(name: str) -> HelpTopic:
            return HelpTopic(name, commands.usage(name, limits), commands.COMMANDS[name].summary)

        if cmd.topic is None:
            self.reply(Help(tuple(topic(name) for name in commands.names_for(self.admin))))
        else:
            self.reply(Help((topic(cmd.topic),), single=True))

    # --- the admins' commands (the parser gives them to admins alone) --------------

    def do_sessions(self, _: commands.ListSessions) -> None:
        admin = IAdmin(self.avatar)

        def failed(f: Failure) -> None:
            self._store_failed(f, "could not list the sessions for {user}", Fault.SERVER_ERROR)

        self._wait(admin.sessions(), self.say, failed)

    def do_kick(self, cmd: commands.Kick) -> None:
        admin = IAdmin(self.avatar)
        try:
            kicked = admin.kick(cmd.user, cmd.reason)
        except UnknownUser as e:
            self.reply(UnknownUsers(e.names, e.suggestions, cmd.command))
            return
        self.reply(kicked)

    def do_announce(self, cmd: commands.Announce) -> None:
        self.reply(IAdmin(self.avatar).announce(cmd.text))

    def do_logout(self, _: commands.Logout) -> None:
        # A clean logout: whatever was shown has been seen, and no token
        # brings this session back.
        if self._unacked:
            self._acknowledge(self._unacked)
        tokens = self.context.tokens
        if tokens is not None and self.name is not None:
            name = self.name
            tokens.revoke(name).addErrback(
                lambda f: self.quiet.failure(
                    "revoking tokens", "could not revoke the tokens of {user}", f, user=name
                )
            )
        self.end(Goodbye(Reason.LOGOUT, self.name))

    def line_BUSY(self, text: str) -> None:
        # Edges hold input while the session waits; one that does not is a bug,
        # and the user is told rather than left guessing.
        log.error("{session!r} got a line while waiting", session=self)
        self.say(Failed(Fault.BUSY))

    # --- from the service, through the edge ------------------------------------------

    def handed(self, messages: Sequence[StoredMessage]) -> None:
        """
        Stored messages the service handed to this user's edge (they came
        from another node): shown as any message, in order with them (the
        edge holds both until the welcome is done), and kept until the user
        has shown they got them.
        """
        if self.state is State.CLOSED:
            return
        self.edge.deliver(self.edge.format.event(Arrived(tuple(messages))))
        self._shown_stored(messages)

    def goodbye(self, reason: Goodbye) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self._closed is None:
            self._closed = []
        self._closed.append(d)
        if self.state is not State.CLOSED:
            self.end(reason)
        return d

    # --- TimeoutMixin -----------------------------------------------------------

    def callLater(self, period: float, func: Callable[[], object]) -> Any:
        return self.context.clock.callLater(period, func)

    def timeoutConnection(self) -> None:
        settings = self.context.settings
        if self.avatar is not None:
            left = self._active + settings.idle_timeout - self.context.clock.seconds()
            if left > 0:
                # A command came since the timer was set: it fires again
                # when the user has been idle for the whole timeout.
                self.setTimeout(left)
                return
        if self.avatar is None:
            self.quiet.info("login timeouts", "login timeout for {host}", self.edge.peer_host)
            self.end(Goodbye(Reason.LOGIN_TIMEOUT, seconds=settings.login_timeout))
        else:
            log.info("{user} timed out", user=self.name)
            self.end(Goodbye(Reason.IDLE, self.name, settings.idle_timeout))


#: The handler of each state that reads a line; the others hold input.
for _state, _handler in (
    (State.USERNAME, "line_USERNAME"),
    (State.PASSWORD, "line_PASSWORD"),
    (State.COMMAND, "line_COMMAND"),
    (State.INTRO, "line_INTRO"),
    (State.AUTHENTICATING, "line_BUSY"),
    (State.WELCOMING, "line_BUSY"),
    (State.BUSY, "line_BUSY"),
    (State.CLOSED, "line_BUSY"),
):
    _state.line_handler = _handler


def _on_node(node: str | None) -> str:
    return f" on node {node}" if node is not None else ""


#: Each command value's handler (the method its entry in the command table
#: names), looked up once rather than by name for every command.
_HANDLERS: dict[type, Callable[[Session, Any], None]] = {
    kind: getattr(Session, commands.COMMANDS[kind.command].handler) for kind in commands.COMMAND_TYPES
}
