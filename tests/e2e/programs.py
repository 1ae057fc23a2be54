"""
The console programs, ``python -m chat.client``, ``python -m chat.peer`` and
``python -m chat.passwd``, run for real: L{PipedProgram} with pipes,
L{PtyProgram} in a pseudo-terminal.  (In-process, with a console that keeps
what it is told: L{tests.unit.console}.)
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
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
from tests.expect import timeout_deferred
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
    """``python -m MODULE``, however the test is connected to it."""

    def __init__(self, module: str) -> None:
        self.module = module
        #: The exit status, or minus the signal that killed it.
        self.status: int | None = None
        self.transport: Any = None

    async def exit(self) -> int:
        """Wait for the program to exit; its status."""
        raise NotImplementedError()

    async def reap(self) -> None:
        """Kill the program if it is still running, and wait for it to end."""
        if self.status is None:
            self.transport.signalProcess("KILL")
        await self.exit()

    def interrupt(self) -> None:
        self.transport.signalProcess("INT")

    def terminate(self) -> None:
        self.transport.signalProcess("TERM")


class PipedProgram(_Program):
    """
    ``python -m MODULE`` with pipes: the test writes its stdin and reads its
    stdout and stderr.
    """

    def __init__(self, module: str) -> None:
        super().__init__(module)
        self.stdout = b""
        self.stderr = b""
        self.position = 0
        self._exit_waiters: list[defer.Deferred[None]] = []
        self._waiters: list[tuple[re.Pattern[str], defer.Deferred[re.Match[str]]]] = []

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

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        still = []
        for pattern, d in self._waiters:
            if d.called:  # timed out
                continue
            m = pattern.search(self.text, self.position)
            if m is not None:
                self.position = m.end()
                d.callback(m)
            else:
                still.append((pattern, d))
        self._waiters = still

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        self.status = exit_status(reason)
        waiters, self._waiters = self._waiters, []
        for pattern, d in waiters:
            if not d.called:
                d.errback(
                    AssertionError(
                        f"{self.module} exited while waiting for {pattern.pattern!r}: {self.text!r}"
                    )
                )
        ended, self._exit_waiters = self._exit_waiters, []
        for e in ended:
            e.callback(None)

    def send(self, *lines: str) -> None:
        self.transport.write("".join(line + "\n" for line in lines).encode("utf-8"))

    def expect(self, pattern: str) -> defer.Deferred[re.Match[str]]:
        """Wait for C{pattern} in stdout after what earlier expectations matched."""
        compiled = re.compile(pattern)
        m = compiled.search(self.text, self.position)
        if m is not None:
            self.position = m.end()
            return defer.succeed(m)
        if self.status is not None:
            return defer.fail(AssertionError(f"{self.module} exited before {pattern!r}: {self.text!r}"))
        d: defer.Deferred[re.Match[str]] = defer.Deferred()
        self._waiters.append((compiled, d))
        return timeout_deferred(d, TIMEOUT, f"{pattern!r} in {self.text!r}")

    async def exit(self) -> int:
        if self.status is None:
            d: defer.Deferred[None] = defer.Deferred()
            self._exit_waiters.append(d)
            await timeout_deferred(d, TIMEOUT, f"{self.module} to exit; output {self.text!r}")
        assert self.status is not None
        return self.status


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
        self._watchers: list[tuple[Callable[[Screen], bool], defer.Deferred[Screen]]] = []
        self._exit_waiters: list[defer.Deferred[None]] = []

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
        screen = self.screen()
        still = []
        for done, d in self._watchers:
            if d.called:
                continue
            if done(screen):
                d.callback(screen)
            else:
                still.append((done, d))
        self._watchers = still

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
        watchers, self._watchers = self._watchers, []
        for _, watcher in watchers:
            if not watcher.called:
                watcher.errback(AssertionError(f"{self.module} exited; the screen was:\n{self._dump()}"))
        waiters, self._exit_waiters = self._exit_waiters, []
        for d in waiters:
            d.callback(None)

    def _dump(self) -> str:
        try:
            return "\n".join(self.screen().lines())
        except AssertionError as e:
            return f"{e}; raw output {self.output!r}"

    def until(self, done: Callable[[Screen], bool], what: str) -> defer.Deferred[Screen]:
        """Wait until the screen shows C{what}, which C{done} checks."""
        d: defer.Deferred[Screen] = defer.Deferred()
        if self.output and done(self.screen()):
            d.callback(self.screen())
            return d
        self._watchers.append((done, d))

        def explain(f: Failure) -> Failure:
            if f.check(defer.TimeoutError):
                raise AssertionError(f"timed out waiting for {what}; the screen was:\n{self._dump()}")
            return f

        return timeout_deferred(d, TIMEOUT, what).addErrback(explain)

    def at_prompt(self, row: str) -> defer.Deferred[Screen]:
        """Wait until the input row reads C{row} with the cursor at its end."""
        return self.until(lambda s: s.cursor_row == row.rstrip() and s.before_cursor == row, repr(row))

    async def exit(self) -> int:
        if not self.ended:
            d: defer.Deferred[None] = defer.Deferred()
            self._exit_waiters.append(d)
            await timeout_deferred(d, TIMEOUT, f"{self.module} to exit; the screen was:\n{self._dump()}")
        assert self.status is not None
        return self.status


def raw(settings: list[Any]) -> bool:
    return not settings[3] & (termios.ECHO | termios.ICANON)
