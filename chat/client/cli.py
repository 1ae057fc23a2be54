"""
The command line of the terminal client, C{python -m chat.client HOST PORT}.

Every way this can fail before the session starts (bad arguments, an
unreadable --cafile, a server that cannot be reached or cannot be trusted)
ends with one line on stderr and exit status 2; see L{chat.client.app} for
the statuses after that.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn, TextIO

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.task import react
from twisted.logger import ILogObserver, LogEvent, Logger, globalLogBeginner, textFileLogObserver
from zope.interface import implementer

from chat.client.app import CANNOT_CONNECT, DISCONNECTED, ChatClient
from chat.client.connect import SetupError, Target, connect, describe_failure
from chat.terminal import open_console

PROG = "python -m chat.client"
NAME = "chat.client"

log = Logger()

DESCRIPTION = """\
Connect to a chat server and chat.  On a terminal the line being typed is
kept intact while messages arrive, the password is not shown, the arrow keys
edit the line and walk the history, Ctrl+C or Ctrl+D logs out.  With input
from a pipe or a file it runs a script: each line is sent at the server's
next prompt, and the client logs out once the last one is answered.
"""

EPILOG = """\
examples:
  python -m chat.client localhost 4119
  python -m chat.client --tls --cafile server.pem chat.example.org 4443
  printf 'columbia\\n116bway\\nwhoelse\\nlogout\\n' | python -m chat.client localhost 4119

'logout' or '\\quit' at the Command: prompt leaves.
exit status: 0 after logging out, 1 if the server closed the connection or it
was lost, 2 if the client could not connect.
"""


@attrs.frozen
class Options:
    target: Target
    timestamps: bool = False
    log: str | None = None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not the usage text: the mistake is what matters."""
        self.exit(CANNOT_CONNECT, f"{NAME}: {message} (see --help)\n")


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("host", metavar="HOST", help="the server's host name or address")
    parser.add_argument("port", metavar="PORT", help="the server's port")
    parser.add_argument(
        "--timestamps",
        action="store_true",
        help="prefix each line from the server with the local time [HH:MM]",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="connect with TLS and verify that the certificate is for HOST and trusted by the system",
    )
    parser.add_argument(
        "--cafile", metavar="FILE", help="with --tls: trust the certificates in this PEM file instead"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="with --tls: do not verify the server's certificate (anyone in between can pose as the server)",
    )
    parser.add_argument("--log", metavar="FILE", help="append the client's own diagnostics to FILE")
    return parser


def parse_arguments(argv: list[str]) -> Options:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        port = int(args.port)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        parser.error(f"PORT must be a number from 1 to 65535, not {args.port!r}")
    if (args.cafile is not None or args.insecure) and not args.tls:
        parser.error("--cafile and --insecure only apply with --tls")
    if args.cafile is not None and args.insecure:
        parser.error("--insecure skips the check that --cafile is for; give one or the other")
    target = Target(args.host, port, tls=args.tls, cafile=args.cafile, insecure=args.insecure)
    return Options(target, timestamps=args.timestamps, log=args.log)


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"{NAME}: {message}\n")
    sys.stderr.flush()
    raise SystemExit(CANNOT_CONNECT)


async def run(reactor: Any, options: Options) -> None:
    target = options.target
    connecting = Deferred.fromCoroutine(connect(reactor, target))
    client: ChatClient | None = None

    def shutting_down() -> Deferred[int] | None:
        # The reactor is stopping on a signal (SIGTERM, or SIGINT before the
        # console takes it): give up connecting, or leave as for Ctrl+C and
        # have the reactor wait for the goodbye and the console.
        if client is None:
            connecting.cancel()
            return None
        if client.finished.called:
            return None
        client.interrupted()
        return client.finished

    reactor.addSystemEventTrigger("before", "shutdown", shutting_down)
    try:
        connection = await connecting
    except SetupError as e:
        _fail(str(e))
    except (CancelledError, ConnectingCancelledError):
        # Cancelled before the name was resolved or during the TLS
        # handshake, or while the TCP connection was being made.
        _fail(f"gave up connecting to {target.describe()}")
    except Exception as e:
        _fail(f"cannot connect to {target.describe()}: {describe_failure(e, target)}")
    client = ChatClient(connection, lambda app: open_console(app, reactor), reactor, options.timestamps)
    client.start()
    status = await client.finished
    if status:
        raise SystemExit(status)


async def _main(reactor: Any, options: Options) -> None:
    try:
        await run(reactor, options)
    except SystemExit:
        raise
    except Exception as e:
        log.failure("the client failed")
        sys.stderr.write(f"\r\n{NAME}: internal error: {e!r}\r\n")
        raise SystemExit(DISCONNECTED) from None


@implementer(ILogObserver)
def _discard(event: LogEvent) -> None:
    pass


def _start_logging(path: str | None) -> None:
    """
    Send Twisted's log (and Python's warnings) to C{path}, or nowhere: until
    logging starts, Twisted prints critical events to stderr, over the
    user's screen.
    """
    if path is None:
        globalLogBeginner.beginLoggingTo([_discard], redirectStandardIO=False)
        return
    try:
        f: TextIO = open(path, "a", encoding="utf-8")
    except OSError as e:
        sys.stderr.write(f"{NAME}: cannot open --log {path}: {e.strerror}\n")
        raise SystemExit(CANNOT_CONNECT) from None
    globalLogBeginner.beginLoggingTo([textFileLogObserver(f)], redirectStandardIO=False)


def main(argv: list[str] | None = None) -> None:
    options = parse_arguments(sys.argv[1:] if argv is None else argv)
    _start_logging(options.log)
    react(_main, (options,))
