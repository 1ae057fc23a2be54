"""
What the terminal client and the pair chat have in common as commands:
their exit statuses, one line on stderr for whatever stops them from
starting, Twisted's log kept off the user's screen, and a session over a
connection that a signal can end at any point, connecting included.

A traceback is for the log, never for the terminal the user is chatting in.
Both programs reach a server through L{chat.client.connect}, so failing to
connect reads the same in both.  What happens before this module can even
be loaded is L{chat.launch}.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, Protocol, TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.task import react
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from chat.client.connect import SetupError, Target, describe_failure

#: Exit statuses: the user (or, in the pair chat, either side) left;
LEFT = 0
#: the connection closed without that, or the program failed (the chat
#: client's script could not log in, too);
DISCONNECTED = 1
#: the program could not start: bad arguments, no connection, no port.
CANNOT_CONNECT = 2

log = Logger()

_Connection = TypeVar("_Connection")


class Parser(argparse.ArgumentParser):
    """
    Arguments for the program called C{name} (such as C{chat.client}), whose
    mistakes are one line and exit status L{CANNOT_CONNECT}.
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name

    def error(self, message: str) -> NoReturn:
        """One line, not the usage text: the mistake is what matters."""
        self.exit(CANNOT_CONNECT, f"{self.name}: {message} (see --help)\n")

    def add_subparsers(self, **kwargs: Any) -> Any:
        """Subcommands, whose mistakes are told as the program's own."""
        kwargs.setdefault("parser_class", functools.partial(Parser, self.name))
        return super().add_subparsers(**kwargs)


def fail(name: str, message: str) -> NoReturn:
    """The program C{name} cannot start, for the reason in C{message}."""
    sys.stderr.write(f"{name}: {message}\n")
    sys.stderr.flush()
    raise SystemExit(CANNOT_CONNECT)


def start_logging(path: str | None = None) -> None:
    """
    Send Twisted's log (and Python's warnings) to the file at C{path}, or
    nowhere: until logging starts, Twisted prints critical events to stderr,
    over the user's screen.

    @raise OSError: the file cannot be opened to append to.
    """
    if path is None:
        globalLogBeginner.beginLoggingTo([], redirectStandardIO=False)
        return
    f = open(path, "a", encoding="utf-8")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(f)], redirectStandardIO=False)


def run_program(name: str, main: Callable[[Any], Coroutine[Any, Any, None]]) -> NoReturn:
    """
    Run C{main} with the reactor, and exit with the status of the
    L{SystemExit} it raises, or 0.  Anything else it raises is a bug: it is
    logged, and one line on the screen says so, starting on a line of its
    own since the terminal may be in the middle of one.
    """

    async def guarded(reactor: Any) -> None:
        try:
            await main(reactor)
        except SystemExit:
            raise
        except Exception as e:
            log.failure("{program} failed", program=name)
            sys.stderr.write(f"\r\n{name}: internal error: {e!r}\r\n")
            raise SystemExit(DISCONNECTED) from None

    react(guarded)


class Session(Protocol):
    """A conversation on a console, from its start to its exit status."""

    @property
    def finished(self) -> Deferred[int]:
        """Fires with the exit status once the console is closed."""

    def start(self) -> None: ...

    def interrupted(self) -> None:
        """Ctrl+C: leave."""


async def run_session(
    reactor: Any,
    name: str,
    target: Target,
    connecting: Deferred[_Connection],
    session_for: Callable[[_Connection], Session],
) -> None:
    """
    Once C{connecting} has the connection to C{target}, run the session
    C{session_for} makes of it, and exit with the session's status.

    Not connecting is one line and exit status L{CANNOT_CONNECT}, whether the
    connection failed or was given up on.  Giving up is what the reactor
    stopping on a signal does to a pending connection (SIGTERM, or SIGINT
    before the console takes it); once there is a session, it leaves as for
    Ctrl+C, and the reactor waits for it to finish.
    """
    session: Session | None = None

    def shutting_down() -> Deferred[int] | None:
        if session is None:
            connecting.cancel()
            return None
        if session.finished.called:
            return None
        session.interrupted()
        return session.finished

    reactor.addSystemEventTrigger("before", "shutdown", shutting_down)
    try:
        connection = await connecting
    except SetupError as e:
        fail(name, str(e))
    except (CancelledError, ConnectingCancelledError):
        # Cancelled before the name was resolved or during the TLS
        # handshake, or while the TCP connection was being made.
        fail(name, f"gave up connecting to {target.describe()}")
    except Exception as e:
        fail(name, f"cannot connect to {target.describe()}: {describe_failure(e, target)}")
    session = session_for(connection)
    session.start()
    status = await session.finished
    if status:
        raise SystemExit(status)
