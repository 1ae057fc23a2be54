"""
The command language of a logged-in session, parsed once into values.

``parse`` is a pure function from one line of text to either a command or a
rejection.  Nothing here knows about users, sockets or time, so the parser can
be fuzzed on its own and every transport (TCP lines today, WebSocket frames
later) shares it.  Whether a recipient exists is a question for the service,
not for the grammar.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import attrs

from chat.server.events import BadUsage, TooLong, UnknownCommand


@attrs.frozen
class Limits:
    """
    The bounds the grammar enforces; they come from the server's options.
    """

    last_hour: int = 60
    max_message: int = 500


# --- commands ---------------------------------------------------------------


@attrs.frozen
class WhoElse:
    pass


@attrs.frozen
class WhoLast:
    minutes: int


@attrs.frozen
class Broadcast:
    text: str


@attrs.frozen
class BroadcastTo:
    recipients: tuple[str, ...]
    text: str


@attrs.frozen
class Message:
    recipient: str
    text: str


@attrs.frozen
class PersonalIntro:
    #: ``None`` means "ask for it on the next line", as seed 001 does.
    text: str | None


@attrs.frozen
class Help:
    topic: str | None = None


@attrs.frozen
class Logout:
    pass


@attrs.frozen
class ShowHistory:
    count: int = 20


Command = WhoElse | WhoLast | Broadcast | BroadcastTo | Message | PersonalIntro | Help | ShowHistory | Logout
COMMAND_TYPES = (WhoElse, WhoLast, Broadcast, BroadcastTo, Message, PersonalIntro, Help, ShowHistory, Logout)


# --- rejections -------------------------------------------------------------
#
# An unknown command, wrong arguments and a text over the limit are error
# events (L{chat.server.events}), shown to the user as they are.


@attrs.frozen
class Blank:
    """An empty or all-space line: not an error, just nothing to do."""


Rejection = Blank | UnknownCommand | BadUsage | TooLong


USAGE: dict[str, str] = {
    "whoelse": "whoelse",
    "wholast": "wholast N   (N = minutes, 0 to {last_hour})",
    "broadcast": "broadcast message TEXT | broadcast user USER [USER ...] message TEXT",
    "message": "message USER TEXT",
    "personalintro": "personalintro [TEXT]",
    "history": "history [N]   (your last N messages, 20 if not given)",
    "help": "help [COMMAND]",
    "logout": "logout",
}

COMMAND_NAMES: tuple[str, ...] = tuple(USAGE)


def usage(command: str, limits: Limits) -> str:
    return USAGE[command].format(last_hour=limits.last_hour)


def closest(word: str, candidates: tuple[str, ...] | list[str]) -> str | None:
    """
    The candidate a typist most likely meant, or None if nothing is close.
    """
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if matches:
        return matches[0]
    # Prefixes ("who", "broad") are common and score low on ratio alone.
    prefixed = [c for c in candidates if word and c.startswith(word)]
    if len(prefixed) >= 1 and len(word) >= 3:
        return prefixed[0]
    return None


def _bad(
    command: str,
    problem: str,
    limits: Limits,
    word: str | None = None,
    number: int | None = None,
    suggestion: str | None = None,
    limit: int | None = None,
) -> BadUsage:
    return BadUsage(command, problem, usage(command, limits), word, number, suggestion, limit)


def _split_word(rest: str) -> tuple[str, str]:
    """Split off the first space-separated word; tolerate runs of spaces."""
    parts = rest.split(None, 1)
    if not parts:
        return "", ""
    if len(parts) == 1:
        return parts[0], ""
    return parts[0], parts[1].strip()


def _text(text: str, command: str, limits: Limits) -> str | Rejection:
    if not text:
        return _bad(command, "missing_text", limits)
    if len(text) > limits.max_message:
        return TooLong(len(text), limits.max_message)
    return text


def _parse_wholast(rest: str, limits: Limits) -> Command | Rejection:
    words = rest.split()
    if len(words) != 1:
        return _bad("wholast", "one_number", limits)
    word = words[0]
    if not (word.isascii() and word.isdigit()):
        return _bad("wholast", "not_a_number", limits, word=word)
    minutes = int(word)
    if minutes > limits.last_hour:
        return _bad("wholast", "too_many_minutes", limits, number=minutes, limit=limits.last_hour)
    return WhoLast(minutes)


def _parse_broadcast(rest: str, limits: Limits) -> Command | Rejection:
    mode, after = _split_word(rest)
    mode = mode.lower()
    if mode == "message":
        text = _text(after, "broadcast", limits)
        return text if not isinstance(text, str) else Broadcast(text)
    if mode == "user":
        recipients: list[str] = []
        remaining = after
        while True:
            word, remaining = _split_word(remaining)
            if not word:
                return _bad("broadcast", "missing_message_word", limits)
            if word.lower() == "message":
                break
            if word not in recipients:
                recipients.append(word)
        if not recipients:
            return _bad("broadcast", "no_recipients", limits)
        text = _text(remaining, "broadcast", limits)
        return text if not isinstance(text, str) else BroadcastTo(tuple(recipients), text)
    if not mode:
        return _bad("broadcast", "missing_mode", limits)
    return _bad("broadcast", "bad_mode", limits, word=mode, suggestion=closest(mode, ["message", "user"]))


def _parse_message(rest: str, limits: Limits) -> Command | Rejection:
    recipient, after = _split_word(rest)
    if not recipient:
        return _bad("message", "missing_recipient", limits)
    text = _text(after, "message", limits)
    return text if not isinstance(text, str) else Message(recipient, text)


def _parse_intro(rest: str, limits: Limits) -> Command | Rejection:
    if not rest:
        return PersonalIntro(None)
    text = _text(rest, "personalintro", limits)
    return text if not isinstance(text, str) else PersonalIntro(text)


_Parser = Callable[[str, Limits], Command | Rejection]


def _no_arguments(command: Command, name: str) -> _Parser:
    def parse_bare(rest: str, limits: Limits) -> Command | Rejection:
        if rest:
            return _bad(name, "no_arguments", limits)
        return command

    return parse_bare


def _parse_help(rest: str, limits: Limits) -> Command | Rejection:
    words = rest.split()
    if not words:
        return Help()
    if len(words) > 1:
        return _bad("help", "one_topic", limits)
    topic = words[0].lower()
    if topic not in USAGE:
        return UnknownCommand(words[0], closest(topic, COMMAND_NAMES))
    return Help(topic)


def _parse_history(rest: str, limits: Limits) -> Command | Rejection:
    words = rest.split()
    if not words:
        return ShowHistory()
    if len(words) > 1:
        return _bad("history", "one_number", limits)
    word = words[0]
    if not (word.isascii() and word.isdigit()) or int(word) == 0:
        return _bad("history", "not_a_count", limits, word=word)
    return ShowHistory(int(word))


_PARSERS: dict[str, _Parser] = {
    "whoelse": _no_arguments(WhoElse(), "whoelse"),
    "wholast": _parse_wholast,
    "broadcast": _parse_broadcast,
    "message": _parse_message,
    "personalintro": _parse_intro,
    "history": _parse_history,
    "help": _parse_help,
    "logout": _no_arguments(Logout(), "logout"),
}


def parse(line: str, limits: Limits = Limits()) -> Command | Rejection:
    """
    Parse one line typed at the ``Command:`` prompt.

    Never raises: every string maps to a command or a rejection that can be
    described to the user in one line.
    """
    word, rest = _split_word(line)
    if not word:
        return Blank()
    name = word.lower()
    parser = _PARSERS.get(name)
    if parser is None:
        return UnknownCommand(word, closest(name, COMMAND_NAMES))
    return parser(rest, limits)
