"""
The console programs, ``python -m chat.client``, ``python -m chat.peer`` and
``python -m chat.passwd``, run for real: L{PipedProgram} with pipes,
L{PtyProgram} in a pseudo-terminal.  (In-process, with a console that keeps
what it is told: L{tests.unit.console}.)
"""

from __future__ import annotations

import codecs
import fcntl
import os
import pty
import socket
import struct
import sys
import termios
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests import ROOT
from tests.expect import Expectations, TextStream
from tests.screen import Screen

#: Generous: the machine may be busy with other work.
TIMEOUT = 60

CTRL_C, CTRL_D = b"\x03", b"\x04"


def program_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def exit_status(reason: Failure) -> int:
    """The exit status a process ended with, or minus the signal that killed it."""
    ended: Any = reason.value
    return ended.exitCode if ended.exitCode is not None else -ended.signal


def free_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class _Program(protocol.ProcessProtocol):
    """
    ``python -m MODULE``, however the test is connected to it.  Its waits,
    for output and for the end, go through one L{Expectations}; the end of
    the program fails those still waiting for output.
    """

    def __init__(self, module: str) -> None:
        self.module = module
        #: The exit status, or minus the signal that killed it.
        self.status: int | None = None
        self.transport: Any = None
        self.expectations: Expectations[Any] = Expectations()

    def _dump(self) -> str:
        """What the program showed, for a failure."""
        raise NotImplementedError()

    def _done(self) -> bool:
        """Whether the program has ended."""
        return self.status is not None

    def _exited(self) -> None:
        self.expectations.check()
        self.expectations.end(f"{self.module} exited")

    async def exit(self) -> int:
        """Wait for the program to exit; its status."""
        if not self._done():
            await self.expectations.wait(
                lambda: self._done() or None,
                lambda: f"{self.module} to exit; it showed:\n{self._dump()}",
                TIMEOUT,
            )
        assert self.status is not None
        return self.status

    async def reap(self) -> None:
        """Kill the program if it is still running, and wait for it to end."""
        if self.status is None:
            self.transport.signalProcess("KILL")
        await self.exit()

    def interrupt(self) -> None:
        self.transport.signalProcess("INT")

    def terminate(self) -> None:
        self.transport.signalProcess("TERM")


class PipedProgram(_Program, TextStream):
    """
    ``python -m MODULE`` with pipes: the test writes its stdin and reads its
    stdout (as a L{TextStream}: C{expect} a pattern after the read position)
    and stderr.
    """

    timeout = TIMEOUT

    def __init__(self, module: str) -> None:
        _Program.__init__(self, module)
        TextStream.__init__(self)
        self.expectations = Expectations()
        self.stdout = b""
        self.stderr = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    @classmethod
    def spawn(cls, module: str, *args: str, stdin: bytes | None = None) -> PipedProgram:
        """Start the program; with C{stdin}, write it and close stdin at once."""
        program = cls(module)
        argv = [sys.executable, "-m", module, *args]
        reactor.spawnProcess(program, sys.executable, argv, env=program_env(), path=ROOT)
        if stdin is not None:
            program.transport.write(stdin)
            program.transport.closeStdin()
        return program

    def _dump(self) -> str:
        return repr(self.text)

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        self.received(self._decoder.decode(data))

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        self.status = exit_status(reason)
        self._exited()

    def send(self, *lines: str) -> None:
        self.transport.write("".join(line + "\n" for line in lines).encode("utf-8"))


class ProgramTestCase(unittest.TestCase):
    """Tests that run one console program, C{python -m program}, with pipes."""

    program: str

    def spawn(self, *args: str, stdin: bytes | None = None) -> PipedProgram:
        process = PipedProgram.spawn(self.program, *args, stdin=stdin)
        self.addCleanup(process.reap)
        return process

    def assertNoTraceback(self, process: PipedProgram) -> None:
        self.assertNotIn(b"Traceback", process.stdout + process.stderr)

    def assertOneLineError(self, process: PipedProgram, *words: str) -> None:
        """Exit status 2, nothing on stdout, and one line on stderr that names the program."""
        self.assertEqual(process.status, 2)
        self.assertEqual(process.stdout, b"")
        self.assertNoTraceback(process)
        lines = process.stderr.decode("utf-8").splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith(f"{self.program}: "), lines)
        for word in words:
            self.assertIn(word, lines[0])


class PtyProgram(_Program):
    """
    ``python -m MODULE`` whose stdin, stdout and stderr are the slave side of
    a pseudo-terminal 80 columns wide; the test holds the master.

    A copy of the slave is kept open until the program exits, so that the
    terminal's settings can be read after it is gone.
    """

    width = 80

    def __init__(self, module: str) -> None:
        super().__init__(module)
        self.output = b""
        self.ended = False
        self.initial_settings: list[Any] = []
        self.settings_at_exit: list[Any] | None = None
        self._slave: int | None = None

    @classmethod
    def spawn(cls, module: str, *args: str) -> PtyProgram:
        program = cls(module)
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cls.width, 0, 0))
        program.initial_settings = termios.tcgetattr(slave)
        program._slave = os.dup(slave)
        argv = [sys.executable, "-m", module, *args]
        # Twisted's own pty handling, with this pty (its type says bool).
        use_pty: Any = (master, slave, os.ttyname(slave))
        reactor.spawnProcess(program, sys.executable, argv, env=program_env(), path=ROOT, usePTY=use_pty)
        return program

    def settings(self) -> list[Any]:
        assert self._slave is not None
        return termios.tcgetattr(self._slave)

    def screen(self) -> Screen:
        return Screen(self.output, self.width)

    def type(self, keys: bytes) -> None:
        self.transport.write(keys)

    def outReceived(self, data: bytes) -> None:
        self.output += data
        self.expectations.check()

    def processExited(self, reason: Failure) -> None:
        self.status = exit_status(reason)
        if self._slave is not None:
            self.settings_at_exit = termios.tcgetattr(self._slave)
            os.close(self._slave)
            self._slave = None

    def processEnded(self, reason: Failure) -> None:
        if self.status is None:
            self.processExited(reason)
        self.ended = True
        self._exited()

    def _dump(self) -> str:
        try:
            return "\n".join(self.screen().lines())
        except AssertionError as e:
            return f"{e}; raw output {self.output!r}"

    def until(self, done: Callable[[Screen], bool], what: str) -> defer.Deferred[Screen]:
        """Wait until the screen shows C{what}, which C{done} checks."""

        def find() -> Screen | None:
            if not self.output:
                return None
            screen = self.screen()
            return screen if done(screen) else None

        return self.expectations.wait(find, lambda: f"{what}; the screen was:\n{self._dump()}", TIMEOUT)

    def at_prompt(self, row: str) -> defer.Deferred[Screen]:
        """Wait until the input row reads C{row} with the cursor at its end."""
        return self.until(lambda s: s.cursor_row == row.rstrip() and s.before_cursor == row, repr(row))

    def _done(self) -> bool:
        return self.ended


def raw(settings: list[Any]) -> bool:
    return not settings[3] & (termios.ECHO | termios.ICANON)
