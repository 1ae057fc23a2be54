"""
One user's conversation with the server, as a state machine over text.

A L{Session} knows nothing of bytes or sockets: it receives decoded lines
and answers through an L{IEdge}, which the TCP line protocol implements
today and a WebSocket gateway can implement later.  Each state has one
handler, C{line_<STATE>}:

    USERNAME -> PASSWORD -> (AUTHENTICATING) -> (WELCOMING) -> COMMAND <-> INTRO
                                                                  |
                                                           (BUSY) + CLOSED

States in parentheses wait for a Deferred (password check, store); while in
them the session asks its edge to stop delivering input, so lines a client
sends ahead (a pasted session, a script) are answered in order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from chat.server import commands
from chat.server.auth import BIDI_CONTROLS, LoginBusy, LoginGuard, loggable_name
from chat.server.commands import Limits
from chat.server.events import StoredMessage
from chat.server.interfaces import AlreadyOnline, IEdge
from chat.server.limits import Exemptions, TokenBucket
from chat.server.service import (
    ChatService,
    ChatUser,
    Entry,
    IChatUser,
    IParticipant,
    Receipt,
    SelfMessage,
    UnknownUser,
    plural,
)

T = TypeVar("T")

log = Logger()


@attrs.frozen
class Settings:
    """The per-session rules, from the server's options."""

    limits: Limits = attrs.field(factory=Limits)
    login_timeout: float = 60.0
    idle_timeout: float = 1800.0
    #: Commands per second, on average, and at once.
    rate: float = 10.0
    burst: float = 20.0
    #: Refused commands in a row after which a flooding user is disconnected.
    flood_disconnect: int = 50
    #: Addresses free of the connection and flood limits.
    exempt: Exemptions = attrs.field(factory=Exemptions)


@attrs.frozen
class ServerContext:
    """What every session of one server shares."""

    service: ChatService
    portal: Portal
    guard: LoginGuard
    clock: IReactorTime
    settings: Settings = attrs.field(factory=Settings)


PROMPTS = {
    "USERNAME": "Username: ",
    "PASSWORD": "Password: ",
    "COMMAND": "Command: ",
    "INTRO": "Intro: ",
}

# C0 controls except tab, DEL, and C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# Refused, not stripped: a line that tries to reorder other users' screens is
# refused whole, as one with control characters is.
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")


def describe_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds % 3600 == 0 and seconds >= 3600:
        n, unit = seconds // 3600, "hour"
    elif seconds % 60 == 0 and seconds >= 60:
        n, unit = seconds // 60, "minute"
    else:
        n, unit = seconds, "second"
    return f"{n} {unit}{'' if n == 1 else 's'}"


def format_entries(entries: Sequence[Entry], header: str, empty: str) -> str:
    if not entries:
        return empty
    width = max(len(e.name) for e in entries)
    lines = [f"{header} ({len(entries)}):"]
    for e in entries:
        line = f"  {e.name:<{width}}"
        if e.intro:
            line += f"  <{e.intro}>"
        if not e.online:
            line += "  (offline)"
        lines.append(line.rstrip())
    return "\n".join(lines)


def format_help(limits: Limits) -> str:
    lines = ["Commands:"]
    for name in commands.COMMAND_NAMES:
        lines.append(f"  {commands.usage(name, limits)}")
        lines.append(f"      {commands.SUMMARY[name]}")
    return "\n".join(lines)


def format_receipt(receipt: Receipt) -> str:
    parts = []
    if receipt.delivered:
        parts.append(f"Sent to {', '.join(receipt.delivered)}.")
    if receipt.stored:
        names = ", ".join(receipt.stored)
        verb = "is" if len(receipt.stored) == 1 else "are"
        parts.append(f"{names} {verb} offline; the message will be delivered when they next log in.")
    if not parts:
        return "Nobody to send to."
    return " ".join(parts)


@implementer(IParticipant)
class Session(TimeoutMixin):
    """
    The state machine of one connection, from the username prompt to the
    goodbye.  One instance per connection; the avatar it gets at login is
    how it acts on the shared service.
    """

    def __init__(self, edge: IEdge, context: ServerContext) -> None:
        self.edge = edge
        self.context = context
        self.state = "USERNAME"
        self.name: str | None = None
        self.avatar: ChatUser | None = None
        self._logout: Callable[[], None] | None = None
        self._held: list[bytes] = []
        #: How a chat message reaches this user.  It depends on the state, so
        #: it is rebound as the state changes rather than tested per message:
        #: held during the welcome, routed by the edge once logged in (the hot
        #: path of every broadcast), dropped once closed.
        self.receive: Callable[[bytes], None] = self._held.append
        self._bucket: TokenBucket | None = None
        self._refused = 0
        self._closed: list[Deferred[None]] = []

    def __repr__(self) -> str:
        return f"<Session {self.log_name} from {self.edge.peer_host} in {self.state}>"

    @property
    def log_name(self) -> str:
        """The user's name as the log may show it: never a password typed as a name."""
        if self.name is None:
            return "-"
        return loggable_name(self.name, self.context.service.users)

    # --- edge -> session --------------------------------------------------------

    def start(self) -> None:
        self.context.service.attach(self)
        self.setTimeout(self.context.settings.login_timeout)
        self.prompt()

    def line_received(self, text: str) -> None:
        """One decoded line from the user, without its line ending."""
        if self.state == "CLOSED":
            return
        if _CONTROL.search(text):
            self.input_error("Control characters are not allowed; that line was ignored.")
            return
        if _BIDI.search(text):
            self.input_error(
                "Characters that change the direction of text (such as U+202E) are not allowed; "
                "that line was ignored."
            )
            return
        try:
            getattr(self, "line_" + self.state)(text)
        except Exception:
            log.failure("error handling a line in {session!r}", session=self)
            self._server_error()

    def input_done(self) -> None:
        """
        The edge has handed over every line of one read: deliver the
        broadcasts they made, together.
        """
        self.context.service.flush()

    def input_error(self, message: str) -> None:
        """A line the edge could not turn into text: say so, ask again."""
        if self.state == "CLOSED":
            return
        self.reply(message)

    def connection_lost(self) -> None:
        self.state = "CLOSED"
        self._stop_deliveries()
        self.setTimeout(None)
        self.context.service.detach(self)
        self._leave()
        waiters, self._closed = self._closed, []
        for d in waiters:
            d.callback(None)

    # --- output helpers ---------------------------------------------------------

    def prompt(self) -> None:
        prompt = PROMPTS.get(self.state)
        if prompt is not None:
            self.edge.send_prompt(prompt)

    def say(self, text: str) -> None:
        self.edge.send_text(text)

    def reply(self, text: str) -> None:
        """Say C{text}, then prompt for the current state, in one write."""
        self.edge.send_text(text, PROMPTS.get(self.state))

    def end(self, text: str) -> None:
        """Say C{text} and close; nothing more is read."""
        self.say(text)
        self.state = "CLOSED"
        self._stop_deliveries()
        self.setTimeout(None)
        self._leave()
        self.edge.close()

    def _stop_deliveries(self) -> None:
        self.edge.route_deliveries(None)
        self.receive = _drop

    def _leave(self) -> None:
        logout, self._logout = self._logout, None
        if logout is not None:
            logout()

    def _server_error(self) -> None:
        if self.state != "CLOSED":
            self.reply("Sorry, that failed because of a server error; please try again.")

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
        self.state = "BUSY"
        self.edge.pause_input()

        def resume(_: object) -> None:
            if self.state == "BUSY":
                self.state = "COMMAND"
                self.prompt()
                self.edge.resume_input()

        d.addBoth(self._complete, done, failed).addBoth(resume)

    def _complete(
        self, result: T | Failure, done: Callable[[T], None], failed: Callable[[Failure], None]
    ) -> None:
        if self.state == "CLOSED":
            return
        try:
            if isinstance(result, Failure):
                failed(result)
            else:
                done(result)
        except Exception:
            log.failure("error finishing a command in {session!r}", session=self)
            self.say("Sorry, that failed because of a server error; please try again.")

    # --- login ------------------------------------------------------------------

    def line_USERNAME(self, text: str) -> None:
        name = text.strip()
        if not name:
            self.prompt()
            return
        if len(name.split()) > 1:
            self.reply("A username is a single word; please try again.")
            return
        blocked = self.context.guard.blocked_for(name, self.edge.peer_host)
        if blocked:
            self._refuse_blocked(name, blocked)
            return
        self.name = name
        self.state = "PASSWORD"
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
        if not guard.begin(name, host):
            self.say(
                f"Too many logins for {name} from your address are being checked; "
                "please try again in a moment."
            )
            self.state = "USERNAME"
            self.prompt()
            return
        self.state = "AUTHENTICATING"
        credentials = UsernamePassword(name.encode("utf-8"), text.encode("utf-8"))
        d = self.context.portal.login(credentials, self, IChatUser)
        d.addCallbacks(self._logged_in, self._login_failed)
        if self.state in ("AUTHENTICATING", "WELCOMING"):
            # A password hash or the store is still working: hold the lines
            # the client sent ahead until the login is complete.
            self.edge.pause_input()

    def _refuse_blocked(self, name: str, seconds: float) -> None:
        log.info(
            "refused {user} from {host}: blocked",
            user=loggable_name(name, self.context.service.users),
            host=self.edge.peer_host,
        )
        self.end(
            f"{name} is blocked from your address for {math.ceil(seconds)} more seconds "
            "after too many failed logins. Disconnecting."
        )

    def _logged_in(self, result: tuple[Any, ChatUser, Callable[[], None]]) -> None:
        try:
            self._start_session(*result)
        except Exception:
            self._login_crashed(Failure())

    def _start_session(self, interface: Any, avatar: ChatUser, logout: Callable[[], None]) -> None:
        self.context.guard.succeeded(avatar.name, self.edge.peer_host)
        if self.state == "CLOSED":
            # The connection went away while the password was being checked.
            logout()
            return
        self.avatar = avatar
        self._logout = logout
        self.state = "WELCOMING"
        self.setTimeout(self.context.settings.idle_timeout)
        now = self.context.clock.seconds()
        settings = self.context.settings
        if not settings.exempt.covers(self.edge.peer_host):
            self._bucket = TokenBucket.full(settings.rate, settings.burst, now)
        self.say(f"Login successful. Welcome to chat, {avatar.name}!")
        avatar.offline_messages().addBoth(self._welcome)

    def _welcome(self, offline: list[StoredMessage] | Failure) -> None:
        """Show what waited for the user, then what arrived meanwhile."""
        if self.state == "CLOSED":
            return
        try:
            if isinstance(offline, Failure):
                log.failure("could not load offline messages for {user}", offline, user=self.name)
                self.say("Your offline messages could not be loaded now; they are kept for next time.")
            elif offline:
                self._show_offline(offline)
        except Exception:
            log.failure("could not show offline messages to {user}", user=self.name)
        self._welcomed()

    def _show_offline(self, messages: list[StoredMessage]) -> None:
        lines = [f"You have {plural(len(messages), 'offline message')}:"]
        lines.extend(m.render() for m in messages)
        self.say("\n".join(lines))
        assert self.avatar is not None
        self.avatar.shown(messages).addErrback(
            lambda f: log.failure("could not mark offline messages shown", f)
        )

    def _welcomed(self) -> None:
        held, self._held = self._held, []
        for line in held:
            self.edge.send_line(line)
        self.edge.route_deliveries(self)
        self.state = "COMMAND"
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
        if f.check(UnauthorizedLogin):
            log.info("failed login for {user} from {host}", user=self.log_name, host=host)
            blocked = guard.failed(name, host)
            reply = "Invalid username or password."
        elif f.check(AlreadyOnline):
            # The password was right; refusing a second session is no failure.
            guard.succeeded(name, host)
            blocked = 0.0
            reply = f"{name} is already logged in; a second session is not allowed."
        else:
            guard.abandoned(name, host)
            blocked = 0.0
            if f.check(LoginBusy):
                reply = "The server is busy checking other logins; please try again in a moment."
            else:
                log.failure("login of {user} failed", f, user=self.log_name)
                reply = "Login failed because of a server error; please try again."
        if self.state == "CLOSED":
            return
        self.state = "USERNAME"
        self.say(reply)
        if blocked:
            self._refuse_blocked(name, blocked)
            return
        self.prompt()
        self.edge.resume_input()

    def _login_crashed(self, f: Failure) -> None:
        log.failure("error completing a login in {session!r}", f, session=self)
        if self.state != "CLOSED":
            self.end("Login failed because of a server error. Disconnecting.")

    # --- commands ---------------------------------------------------------------

    def line_COMMAND(self, text: str) -> None:
        self.resetTimeout()
        bucket = self._bucket
        if bucket is not None and not bucket.take(self.context.clock.seconds()):
            self._refused += 1
            if self._refused >= self.context.settings.flood_disconnect:
                log.warn("{user} disconnected for flooding", user=self.name)
                self.end("Disconnected for sending too many commands too fast.")
                return
            rate = self.context.settings.rate
            commands_ = "command" if rate == 1 else "commands"
            self.reply(f"Slow down: at most {rate:g} {commands_} per second. That one was ignored.")
            return
        self._refused = 0
        parsed = commands.parse(text, self.context.settings.limits)
        handler = _COMMAND_HANDLERS.get(type(parsed))
        if handler is not None:
            handler(self, parsed)
        elif isinstance(parsed, commands.Blank):
            self.prompt()
        else:
            self.reply(parsed.describe())  # type: ignore[union-attr]

    def cmd_WhoElse(self, _: commands.WhoElse) -> None:
        assert self.avatar is not None
        entries = self.avatar.whoelse()
        self.reply(format_entries(entries, "Online now", "Nobody else is online."))

    def cmd_WhoLast(self, cmd: commands.WhoLast) -> None:
        assert self.avatar is not None
        entries = self.avatar.wholast(cmd.minutes)
        span = plural(cmd.minutes, "minute")
        self.reply(
            format_entries(
                entries,
                f"Online in the last {span}",
                f"Nobody else was online in the last {span}.",
            )
        )

    def cmd_Broadcast(self, cmd: commands.Broadcast) -> None:
        assert self.avatar is not None
        count = self.avatar.broadcast(cmd.text)
        if count:
            self.reply(f"Broadcast to {plural(count, 'user')}.")
        else:
            self.reply("Nobody else is online; the broadcast reached no one.")

    def _send(self, send: Callable[[], Receipt | Deferred[Receipt]]) -> None:
        try:
            result = send()
        except UnknownUser as e:
            self.reply(_describe_unknown(e))
            return
        except SelfMessage:
            self.reply("That is you; send a message to someone else.")
            return
        if isinstance(result, Receipt):
            # Everyone was online: the usual case, with no Deferred to wait on.
            self.reply(format_receipt(result))
        else:
            self._wait(result, lambda receipt: self.say(format_receipt(receipt)), self._not_stored)

    def _not_stored(self, f: Failure) -> None:
        log.failure("could not store a message from {user}", f, user=self.name)
        self.say("The message could not be stored for offline users, so it was not kept; please try again.")

    def cmd_BroadcastTo(self, cmd: commands.BroadcastTo) -> None:
        assert self.avatar is not None
        avatar = self.avatar
        self._send(lambda: avatar.broadcast_to(cmd.recipients, cmd.text))

    def cmd_Message(self, cmd: commands.Message) -> None:
        assert self.avatar is not None
        avatar = self.avatar
        self._send(lambda: avatar.message(cmd.recipient, cmd.text))

    def cmd_PersonalIntro(self, cmd: commands.PersonalIntro) -> None:
        if cmd.text is None:
            self.state = "INTRO"
            self.reply("Please enter your personal introduction (an empty line keeps the current one):")
            return
        self._save_intro(cmd.text)

    def line_INTRO(self, text: str) -> None:
        self.resetTimeout()
        self.state = "COMMAND"
        text = text.strip()
        if not text:
            self.reply("Personal introduction unchanged.")
            return
        limit = self.context.settings.limits.max_message
        if len(text) > limit:
            self.reply(f"Introduction too long: {len(text)} characters; the limit is {limit}. Unchanged.")
            return
        self._save_intro(text)

    def _save_intro(self, text: str) -> None:
        assert self.avatar is not None

        def failed(f: Failure) -> None:
            log.failure("could not save the intro of {user}", f, user=self.name)
            self.say("Your introduction could not be saved; please try again.")

        self._wait(
            self.avatar.set_intro(text),
            lambda _: self.say("Personal introduction saved."),
            failed,
        )

    def cmd_Help(self, cmd: commands.Help) -> None:
        limits = self.context.settings.limits
        if cmd.topic is None:
            self.reply(format_help(limits))
        else:
            self.reply(f"Usage: {commands.usage(cmd.topic, limits)}\n  {commands.SUMMARY[cmd.topic]}")

    def cmd_Logout(self, _: commands.Logout) -> None:
        self.end(f"Goodbye, {self.name}!")

    def line_BUSY(self, text: str) -> None:
        # Edges hold input while the session waits; one that does not is a bug,
        # and the user is told rather than left guessing.
        log.error("{session!r} got a line while waiting", session=self)
        self.say("Still working on your previous command; that line was ignored.")

    line_AUTHENTICATING = line_BUSY
    line_WELCOMING = line_BUSY

    # --- IParticipant -----------------------------------------------------------

    def goodbye(self, reason: str) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._closed.append(d)
        if self.state != "CLOSED":
            self.end(reason)
        return d

    # --- TimeoutMixin -----------------------------------------------------------

    def callLater(self, period: float, func: Callable[[], object]) -> Any:
        return self.context.clock.callLater(period, func)

    def timeoutConnection(self) -> None:
        settings = self.context.settings
        if self.avatar is None:
            log.info("login timeout for {host}", host=self.edge.peer_host)
            self.end(f"Login timed out after {describe_duration(settings.login_timeout)}. Disconnecting.")
        else:
            log.info("{user} timed out", user=self.name)
            self.end(f"Logged out after {describe_duration(settings.idle_timeout)} without a command.")


#: Each command value's handler, C{Session.cmd_<Command>}, looked up once.
_COMMAND_HANDLERS: dict[type, Callable[[Session, Any], None]] = {
    kind: getattr(Session, "cmd_" + kind.__name__)
    for kind in (
        commands.WhoElse,
        commands.WhoLast,
        commands.Broadcast,
        commands.BroadcastTo,
        commands.Message,
        commands.PersonalIntro,
        commands.Help,
        commands.Logout,
    )
}


def _drop(line: bytes) -> None:
    """Where messages to a closed session go."""


def _describe_unknown(e: UnknownUser) -> str:
    parts = []
    for name in e.names:
        hint = e.suggestions.get(name)
        if hint is not None:
            parts.append(f"No user named '{name}'; did you mean '{hint}'?")
        else:
            parts.append(f"No user named '{name}'.")
    return " ".join(parts) + " Nothing was sent."
