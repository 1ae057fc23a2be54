"""
The command line of the pair chat::

    python -m chat.peer serve PORT [--handle NAME] [--interface ADDRESS]
    python -m chat.peer connect HOST PORT [--handle NAME]

Every way this can fail before the chat starts (bad arguments, a port that
cannot be listened on, a server that cannot be reached) ends with one line
on stderr and exit status 2; see L{chat.peer.app} for the statuses after
that.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import attrs
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Factory

from chat.cli import Parser, fail, run_program, run_session, start_logging
from chat.client.connect import Target, endpoint_for
from chat.peer.app import PairClient, PairServer
from chat.peer.framing import QUIT, Handle, HandleError
from chat.peer.protocol import PairServerFactory, PeerProtocol
from chat.terminal import open_console

PROG = "python -m chat.peer"
NAME = "chat.peer"
DEFAULT_HANDLE = "HostA"

DESCRIPTION = f"""\
A chat between two people, compatible with the classic chatserve.py and
chatclient programs.  One runs the server under a handle; the other
connects, picks a handle, and the two send messages of up to 500
characters, whenever they like, until either sends {QUIT}.  The server then
waits for the next client, until Ctrl+C.
"""

EPILOG = f"""\
examples:
  python -m chat.peer serve 30020 --handle HostA
  python -m chat.peer connect localhost 30020
  printf 'SteveO\\nHi!!\\n{QUIT}\\n' | python -m chat.peer connect localhost 30020

A handle is one word of 1 to 10 characters, without '>'.  Ctrl+C or Ctrl+D
says {QUIT} and leaves (on the server: and stops it).
exit status: 0 after {QUIT} from either side, 1 if the connection closed
without one (a busy server, a lost connection), 2 if the program could not
start: bad arguments, a port in use, a server that cannot be reached.
"""


@attrs.frozen
class ServeOptions:
    port: int
    handle: Handle
    #: The address to listen on; empty for all of them.
    interface: str = ""


@attrs.frozen
class ConnectOptions:
    target: Target
    #: Asked for at the start when not given.
    handle: Handle | None = None


def _handle_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--handle",
        metavar="NAME",
        help="the handle to chat under: one word of 1 to 10 characters, without '>'",
    )


def _parser() -> Parser:
    parser = Parser(
        NAME,
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="wait for clients, and chat with one at a time",
        description="Wait for clients on PORT, and chat with one at a time; Ctrl+C stops the server.",
    )
    serve.add_argument("port", metavar="PORT", help="the port to listen on (0: any free port)")
    _handle_option(serve)
    serve.set_defaults(handle=DEFAULT_HANDLE)
    serve.add_argument(
        "--interface",
        metavar="ADDRESS",
        default="",
        help="listen on this address only, such as 127.0.0.1 (default: all IPv4 addresses)",
    )
    connect = commands.add_parser(
        "connect",
        help="connect to a server and chat",
        description="Connect to the server at HOST PORT and chat; the handle is asked for unless given.",
    )
    connect.add_argument("host", metavar="HOST", help="the server's host name or address")
    connect.add_argument("port", metavar="PORT", help="the server's port")
    _handle_option(connect)
    return parser


def _port(parser: Parser, text: str, lowest: int) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not lowest <= port <= 65535:
        parser.error(f"PORT must be a number from {lowest} to 65535, not {text!r}")
    return port


def _handle(parser: Parser, text: str | None) -> Handle | None:
    if text is None:
        return None
    try:
        return Handle.parse(text)
    except HandleError as e:
        reason = str(e)
        parser.error(f"--handle {text!r}: {reason[:1].lower()}{reason[1:].rstrip('.')}")


def parse_arguments(argv: list[str]) -> ServeOptions | ConnectOptions:
    parser = _parser()
    args = parser.parse_args(argv)
    handle = _handle(parser, args.handle)
    if args.command == "serve":
        assert handle is not None
        return ServeOptions(_port(parser, args.port, 0), handle, args.interface)
    return ConnectOptions(Target(args.host, _port(parser, args.port, 1)), handle)


def _why(error: CannotListenError) -> str:
    reason = error.socketError
    text = getattr(reason, "strerror", None) or str(reason)
    return text[:1].lower() + text[1:]


async def serve(reactor: Any, options: ServeOptions) -> None:
    factory = PairServerFactory(options.handle, reactor)
    try:
        port = reactor.listenTCP(options.port, factory, interface=options.interface)
    except CannotListenError as e:
        where = f"{options.interface}:{options.port}" if options.interface else f"port {options.port}"
        fail(NAME, f"cannot listen on {where}: {_why(e)}")
    server = PairServer(factory, port, lambda app: open_console(app, reactor))
    # SIGTERM, or SIGINT before the console takes it: stop as for Ctrl+C,
    # and have the reactor wait for that.
    reactor.addSystemEventTrigger("before", "shutdown", server.stop)
    server.start()
    status = await server.finished
    if status:
        raise SystemExit(status)


async def connect(reactor: Any, options: ConnectOptions) -> None:
    target = options.target
    factory = Factory.forProtocol(lambda: PeerProtocol(reactor))
    connecting = endpoint_for(reactor, target).connect(factory)

    def session(connection: IProtocol) -> PairClient:
        assert isinstance(connection, PeerProtocol)
        return PairClient(
            connection, target.describe(), lambda app: open_console(app, reactor), options.handle
        )

    await run_session(reactor, NAME, target, connecting, session)


async def run(reactor: Any, options: ServeOptions | ConnectOptions) -> None:
    if isinstance(options, ServeOptions):
        await serve(reactor, options)
    else:
        await connect(reactor, options)


def main(argv: list[str] | None = None) -> None:
    options = parse_arguments(sys.argv[1:] if argv is None else argv)
    # Nothing of Twisted's own log is for the user.
    start_logging()
    run_program(NAME, lambda reactor: run(reactor, options))
