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


Command = WhoElse | WhoLast | Broadcast | BroadcastTo | Message | PersonalIntro | Help | Logout


# --- rejections -------------------------------------------------------------


@attrs.frozen
class Blank:
    """An empty or all-space line: not an error, just nothing to do."""


@attrs.frozen
class UnknownCommand:
    word: str
    suggestion: str | None

    def describe(self) -> str:
        if self.suggestion is not None:
            return f"Unknown command '{self.word}'; did you mean '{self.suggestion}'?"
        return f"Unknown command '{self.word}'; type 'help' for the list of commands."


@attrs.frozen
class BadUsage:
    command: str
    problem: str
    usage: str

    def describe(self) -> str:
        return f"{self.problem}. Usage: {self.usage}"


@attrs.frozen
class TooLong:
    length: int
    limit: int

    def describe(self) -> str:
        return f"Message too long: {self.length} characters; the limit is {self.limit}. Nothing was sent."


Rejection = Blank | UnknownCommand | BadUsage | TooLong


USAGE: dict[str, str] = {
    "whoelse": "whoelse",
    "wholast": "wholast N   (N = minutes, 0 to {last_hour})",
    "broadcast": "broadcast message TEXT | broadcast user USER [USER ...] message TEXT",
    "message": "message USER TEXT",
    "personalintro": "personalintro [TEXT]",
    "help": "help [COMMAND]",
    "logout": "logout",
}

SUMMARY: dict[str, str] = {
    "whoelse": "who else is online now, with their personal intros",
    "wholast": "who was online in the last N minutes",
    "broadcast": "send TEXT to everyone online, or to the listed users",
    "message": "send TEXT to USER alone (kept for them if they are offline)",
    "personalintro": "set the intro others see in whoelse and wholast",
    "help": "this list, or the usage of one command",
    "logout": "leave the chat",
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


def _bad(command: str, problem: str, limits: Limits) -> BadUsage:
    return BadUsage(command, problem, usage(command, limits))


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
        return _bad(command, "Missing message text", limits)
    if len(text) > limits.max_message:
        return TooLong(len(text), limits.max_message)
    return text


def _parse_wholast(rest: str, limits: Limits) -> Command | Rejection:
    words = rest.split()
    if len(words) != 1:
        return _bad("wholast", "wholast takes one number", limits)
    word = words[0]
    if not (word.isascii() and word.isdigit()):
        return _bad("wholast", f"'{word}' is not a whole number of minutes", limits)
    minutes = int(word)
    if minutes > limits.last_hour:
        return _bad("wholast", f"{minutes} is more than {limits.last_hour} minutes", limits)
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
                return _bad("broadcast", "Missing 'message' after the user names", limits)
            if word.lower() == "message":
                break
            if word not in recipients:
                recipients.append(word)
        if not recipients:
            return _bad("broadcast", "No user names before 'message'", limits)
        text = _text(remaining, "broadcast", limits)
        return text if not isinstance(text, str) else BroadcastTo(tuple(recipients), text)
    if not mode:
        return _bad("broadcast", "broadcast needs 'message' or 'user'", limits)
    hint = closest(mode, ["message", "user"])
    if hint is not None:
        return _bad("broadcast", f"'{mode}' is not 'message' or 'user' (did you mean '{hint}'?)", limits)
    return _bad("broadcast", f"'{mode}' is not 'message' or 'user'", limits)


def _parse_message(rest: str, limits: Limits) -> Command | Rejection:
    recipient, after = _split_word(rest)
    if not recipient:
        return _bad("message", "Missing recipient and text", limits)
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
            return _bad(name, f"{name} takes no arguments", limits)
        return command

    return parse_bare


def _parse_help(rest: str, limits: Limits) -> Command | Rejection:
    words = rest.split()
    if not words:
        return Help()
    if len(words) > 1:
        return _bad("help", "help takes at most one command name", limits)
    topic = words[0].lower()
    if topic not in USAGE:
        return UnknownCommand(words[0], closest(topic, COMMAND_NAMES))
    return Help(topic)


_PARSERS: dict[str, _Parser] = {
    "whoelse": _no_arguments(WhoElse(), "whoelse"),
    "wholast": _parse_wholast,
    "broadcast": _parse_broadcast,
    "message": _parse_message,
    "personalintro": _parse_intro,
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
