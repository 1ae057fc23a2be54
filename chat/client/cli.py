"""
The command line of the terminal client, C{python -m chat.client HOST PORT}.

Every way this can fail before the session starts (bad arguments, an
unreadable --cafile, a server that cannot be reached or cannot be trusted, or
that says nothing because it expects TLS) ends with one line on stderr and
exit status 2; see L{chat.client.app} for the statuses after that.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from chat.cli import Parser, fail, run_program, run_session, start_logging
from chat.client.app import ChatClient
from chat.client.connect import Target, connect
from chat.client.protocol import ChatClientProtocol
from chat.terminal import open_console

PROG = "python -m chat.client"
NAME = "chat.client"

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
was lost, or refused a script's login, 2 if the client could not connect.
"""


@attrs.frozen
class Options:
    target: Target
    timestamps: bool = False
    log: str | None = None


def _parser() -> Parser:
    parser = Parser(
        NAME,
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


async def run(reactor: Any, options: Options) -> None:
    def session(connection: ChatClientProtocol) -> ChatClient:
        return ChatClient(connection, lambda app: open_console(app, reactor), reactor, options.timestamps)

    connecting = Deferred.fromCoroutine(connect(reactor, options.target))
    await run_session(reactor, NAME, options.target, connecting, session)


def main(argv: list[str] | None = None) -> None:
    options = parse_arguments(sys.argv[1:] if argv is None else argv)
    try:
        start_logging(options.log)
    except OSError as e:
        fail(NAME, f"cannot open --log {options.log}: {e.strerror}")
    run_program(NAME, lambda reactor: run(reactor, options))
