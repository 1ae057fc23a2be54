"""
Tests for chat.terminal: the line editor through insults' key parser over a
StringTransport, the plain console, and open_console on real pipes and a
real pseudo-terminal.

L{tests.screen.Screen} replays what was written to a terminal, so tests
assert on what the user would see rather than on escape sequences.
"""

from __future__ import annotations

import fcntl
import os
import termios

from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chat.terminal import (
    IConsole,
    IConsoleApp,
    PlainConsole,
    TerminalConsole,
    cell_width,
    open_console,
    visible,
)
from tests.screen import Screen

UP, DOWN, RIGHT, LEFT = b"\x1b[A", b"\x1b[B", b"\x1b[C", b"\x1b[D"
HOME, END, DELETE = b"\x1b[H", b"\x1b[F", b"\x1b[3~"
CTRL_A, CTRL_C, CTRL_D, CTRL_E = b"\x01", b"\x03", b"\x04", b"\x05"
CTRL_K, CTRL_U, CTRL_W, BACKSPACE = b"\x0b", b"\x15", b"\x17", b"\x7f"


@implementer(IConsoleApp)
class Recorder:
    """An application that records what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.interrupts = 0
        self.ends = 0
        self.on_line = lambda line: None

    def line_entered(self, line: str) -> None:
        self.lines.append(line)
        self.on_line(line)

    def interrupted(self) -> None:
        self.interrupts += 1

    def input_ended(self) -> None:
        self.ends += 1


class TerminalConsoleTests(unittest.TestCase):
    width = 80

    def setUp(self) -> None:
        self.app = Recorder()
        self.console = TerminalConsole(self.app, self.width)
        self.transport = StringTransport()
        self.console.protocol.makeConnection(self.transport)

    def type(self, *keys: bytes) -> None:
        for key in keys:
            self.console.protocol.dataReceived(key)

    def screen(self) -> Screen:
        return Screen(self.transport.value(), self.width)

    def test_provides_the_console_interface(self) -> None:
        self.assertTrue(verifyObject(IConsole, self.console))
        self.assertTrue(self.console.interactive)

    def test_typed_text_is_shown_after_the_prompt(self) -> None:
        self.console.set_prompt("Command: ")
        self.type(b"whoelse")
        screen = self.screen()
        self.assertEqual(screen.cursor_row, "Command: whoelse")
        self.assertEqual(screen.before_cursor, "Command: whoelse")

    def test_enter_gives_the_line_and_leaves_it_on_screen(self) -> None:
        self.console.set_prompt("Command: ")
        self.type(b"whoelse\r")
        self.assertEqual(self.app.lines, ["whoelse"])
        self.assertEqual(self.screen().lines(), ["Command: whoelse"])
        self.assertEqual(self.screen().cursor_row, "")

    def test_non_ascii_keystrokes_are_kept(self) -> None:
        """
        Characters arrive as UTF-8 bytes, one keystroke per byte, possibly
        split across reads; all of them reach the line.
        """
        self.console.set_prompt("> ")
        typed = "héllo мир 日本語 🎉".encode()
        for i in range(len(typed)):
            self.type(typed[i : i + 1])
        self.type(b"\r")
        self.assertEqual(self.app.lines, ["héllo мир 日本語 🎉"])
        self.assertEqual(self.screen().lines(), ["> héllo мир 日本語 🎉"])

    def test_arrow_keys_move_the_cursor_for_inserting(self) -> None:
        self.console.set_prompt("> ")
        self.type(b"mesage seas hi", LEFT * 11, b"s", END, b"!", HOME, b"[", CTRL_E, b"]")
        self.type(CTRL_A, RIGHT, b"x\r")
        self.assertEqual(self.app.lines, ["[xmessage seas hi!]"])

    def test_cursor_is_drawn_where_the_next_key_goes(self) -> None:
        self.console.set_prompt("> ")
        self.type(b"hello", LEFT * 2)
        self.assertEqual(self.screen().before_cursor, "> hel")

    def test_backspace_and_delete(self) -> None:
        self.console.set_prompt("> ")
        self.type(b"abcdef", BACKSPACE, LEFT * 2, DELETE, HOME, DELETE, b"\r")
        self.assertEqual(self.app.lines, ["bce"])

    def test_kill_keys(self) -> None:
        self.console.set_prompt("> ")
        self.type(b"message seas hello there", CTRL_W, b"\r")
        self.console.set_prompt("> ")
        self.type(b"one two", LEFT * 3, CTRL_K, b"\r")
        self.console.set_prompt("> ")
        self.type(b"one two", LEFT * 3, CTRL_U, b"\r")
        self.assertEqual(self.app.lines, ["message seas hello ", "one ", "two"])

    def test_up_and_down_walk_the_history_and_keep_the_draft(self) -> None:
        for line in (b"whoelse", b"wholast 5"):
            self.console.set_prompt("> ")
            self.type(line + b"\r")
        self.console.set_prompt("> ")
        self.type(b"draft", UP)
        self.assertEqual(self.screen().cursor_row, "> wholast 5")
        self.type(UP, UP)
        self.assertEqual(self.screen().cursor_row, "> whoelse")
        self.type(DOWN, DOWN)
        self.assertEqual(self.screen().cursor_row, "> draft")
        self.type(UP, UP, b"\r")
        self.assertEqual(self.app.lines[-1], "whoelse")

    def test_history_keeps_no_secret_and_no_blank_lines(self) -> None:
        self.console.set_prompt("Command: ")
        self.type(b"whoelse\r")
        self.console.set_prompt("Password: ", secret=True)
        self.type(b"116bway\r")
        self.console.set_prompt("Command: ")
        self.type(b"   \r")
        self.console.set_prompt("Command: ")
        self.type(UP)
        self.assertEqual(self.screen().cursor_row, "Command: whoelse")
        self.type(UP)
        self.assertEqual(self.screen().cursor_row, "Command: whoelse")

    def test_a_line_asked_for_without_history_is_shown_but_not_kept(self) -> None:
        """What is typed to log in is no command to repeat at a later prompt."""
        self.console.set_prompt("Username: ", history=False)
        self.type(b"columbia\r")
        self.assertEqual(self.app.lines, ["columbia"])
        self.assertEqual(self.screen().lines(), ["Username: columbia"])
        self.console.set_prompt("Command: ")
        self.type(UP, b"x")
        self.assertEqual(self.screen().cursor_row, "Command: x")

    def test_secret_prompt_shows_nothing_typed(self) -> None:
        self.console.set_prompt("Password: ", secret=True)
        self.type(b"116bway", LEFT, BACKSPACE, b"y", UP)
        self.assertNotIn(b"116", self.transport.value())
        self.assertEqual(self.screen().cursor_row, "Password:")
        self.type(b"\r")
        self.assertEqual(self.app.lines, ["116bwyy"])
        self.assertNotIn(b"116", self.transport.value())
        self.assertEqual(self.screen().lines(), ["Password:"])

    def test_keys_typed_before_the_prompt_wait_for_it(self) -> None:
        """
        A password typed while the password prompt is on its way is not
        echoed: keys wait for the prompt, and then obey it.
        """
        self.console.set_prompt("Username: ")
        self.type(b"columbia\r116bway\r")
        self.assertEqual(self.app.lines, ["columbia"])
        self.assertNotIn(b"116bway", self.transport.value())
        self.console.set_prompt("Password: ", secret=True)
        self.assertEqual(self.app.lines, ["columbia", "116bway"])
        self.assertNotIn(b"116bway", self.transport.value())

    def test_lines_typed_ahead_are_given_one_per_prompt(self) -> None:
        self.console.set_prompt("> ")
        self.type(b"one\rtwo\rthr")
        self.assertEqual(self.app.lines, ["one"])
        self.console.set_prompt("> ")
        self.assertEqual(self.app.lines, ["one", "two"])
        self.console.set_prompt("> ")
        self.assertEqual(self.screen().cursor_row, "> thr")

    def test_a_long_paste_does_not_recurse(self) -> None:
        """An application that asks again from line_entered gets every line."""
        self.app.on_line = lambda line: self.console.set_prompt("> ")
        self.type(b"line\r" * 3000)
        self.console.set_prompt("> ")
        self.assertEqual(len(self.app.lines), 3000)

    def test_shown_text_goes_above_the_half_typed_line(self) -> None:
        self.console.set_prompt("Command: ")
        self.type(b"message seas hi the")
        self.console.show("seas (private): hello\ngoogle (broadcast): hi all")
        screen = self.screen()
        self.assertEqual(
            screen.lines(),
            ["seas (private): hello", "google (broadcast): hi all", "Command: message seas hi the"],
        )
        self.assertEqual(screen.before_cursor, "Command: message seas hi the")
        self.type(b"re\r")
        self.assertEqual(self.app.lines, ["message seas hi there"])

    def test_shown_text_keeps_the_cursor_inside_the_line(self) -> None:
        self.console.set_prompt("> ")
        self.type(b"hello world", LEFT * 6)
        self.console.show("news")
        self.assertEqual(self.screen().before_cursor, "> hello")

    def test_shown_text_cannot_send_escape_sequences(self) -> None:
        self.console.show("evil \x1b[2J\x1bc\x07 text\r")
        self.assertEqual(self.screen().lines(), ["evil ^[[2J^[c^G text"])

    def test_ctrl_c_interrupts_and_leaves_the_line_visible(self) -> None:
        self.console.set_prompt("Command: ")
        self.type(b"half", CTRL_C, b"more")
        self.assertEqual(self.app.interrupts, 1)
        self.assertEqual(self.app.lines, [])
        self.assertEqual(self.screen().lines(), ["Command: half^C"])

    def test_ctrl_c_is_not_held_while_waiting(self) -> None:
        self.type(b"abc", CTRL_C)
        self.assertEqual(self.app.interrupts, 1)

    def test_ctrl_d_on_an_empty_line_ends_input(self) -> None:
        self.console.set_prompt("Command: ")
        self.type(CTRL_D)
        self.assertEqual(self.app.ends, 1)
        self.assertEqual(self.screen().lines(), ["Command:"])

    def test_ctrl_d_in_text_deletes(self) -> None:
        self.console.set_prompt("> ")
        self.type(b"abc", HOME, CTRL_D, b"\r")
        self.assertEqual((self.app.lines, self.app.ends), (["bc"], 0))

    def test_a_long_line_scrolls_sideways_in_one_row(self) -> None:
        self.width = 20
        self.setUp()
        self.console.set_prompt("> ")
        line = "".join(chr(ord("a") + i % 26) for i in range(50))
        self.type(line.encode())
        screen = self.screen()
        self.assertEqual(len(screen.lines()), 1)
        self.assertTrue(line.endswith(screen.cursor_row.removeprefix("> ")))
        self.assertLessEqual(len(screen.cursor_row), 19)
        self.type(HOME)
        self.assertEqual(self.screen().cursor_row, "> " + line[:17])
        self.assertEqual(self.screen().before_cursor, "> ")
        self.type(b"\r")
        self.assertEqual(self.app.lines, [line])

    def test_wide_characters_take_two_columns(self) -> None:
        self.console.set_prompt("> ")
        self.type("日本語".encode(), LEFT)
        self.assertEqual(self.screen().x, 2 + 4)
        self.assertEqual(cell_width("日本語"), 6)

    def test_resizing_redraws_to_the_new_width(self) -> None:
        self.console.set_prompt("> ")
        self.type(b"x" * 60)
        self.console.editor.terminalSize(30, 24)
        self.assertEqual(Screen(self.transport.value(), 30).cursor_row, "> " + "x" * 27)

    def test_application_mode_cursor_keys_and_word_motions(self) -> None:
        self.console.set_prompt("> ")
        self.type(b"one two", b"\x1bOD", b"\x1bOD", b"X")
        self.type(b"\x1bb", b"Y", b"\x1b[1;5D", b"Z\r")
        self.assertEqual(self.app.lines, ["one ZYtXwo"])

    def test_unknown_keys_type_nothing(self) -> None:
        self.console.set_prompt("> ")
        self.type(b"a", b"\x1b[5~", b"\x1b[15~", b"\x1bOP", b"\x00", b"b\r")
        self.assertEqual(self.app.lines, ["ab"])

    def test_close_erases_the_input_row_and_waits_for_the_output(self) -> None:
        self.console.set_prompt("Command: ")
        self.type(b"half")
        d = self.console.close()
        self.assertNoResult(d)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.screen().lines(), [])
        self.type(b"more\r")
        self.console.show("after")
        self.assertEqual(self.app.lines, [])
        self.console.protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.assertEqual(self.app.ends, 0)

    def test_lost_terminal_ends_input(self) -> None:
        self.console.set_prompt("> ")
        self.console.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.app.ends, 1)
        self.successResultOf(self.console.close())


class PlainConsoleTests(unittest.TestCase):
    def setUp(self) -> None:
        self.app = Recorder()
        self.console = PlainConsole(self.app)
        self.transport = StringTransport()
        self.console.makeConnection(self.transport)

    def output(self) -> str:
        return self.transport.value().decode("utf-8")

    def test_provides_the_console_interface(self) -> None:
        self.assertTrue(verifyObject(IConsole, self.console))

    def test_lines_are_given_one_per_prompt_as_a_transcript(self) -> None:
        self.console.dataReceived(b"columbia\nwhoelse\n")
        self.assertEqual(self.app.lines, [])
        self.console.set_prompt("Username: ")
        self.assertEqual(self.app.lines, ["columbia"])
        self.console.show("Some reply.")
        self.console.set_prompt("Command: ")
        self.assertEqual(self.app.lines, ["columbia", "whoelse"])
        self.assertEqual(self.output(), "Username: columbia\nSome reply.\nCommand: whoelse\n")

    def test_secret_lines_are_left_out(self) -> None:
        self.console.dataReceived(b"116bway\n")
        self.console.set_prompt("Password: ", secret=True)
        self.assertEqual(self.app.lines, ["116bway"])
        self.assertEqual(self.output(), "Password: \n")

    def test_terminal_echo_is_off_for_secret_prompts(self) -> None:
        hidden: list[bool] = []
        self.console.hide_input = hidden.append
        self.console.set_prompt("Password: ", secret=True)
        self.console.dataReceived(b"116bway\n")
        self.assertEqual(hidden, [True, False])

    def test_input_ends_after_the_last_line_is_taken(self) -> None:
        self.console.dataReceived(b"one\ntwo")
        self.console.readConnectionLost()
        self.console.set_prompt("> ")
        self.console.set_prompt("> ")
        self.assertEqual((self.app.lines, self.app.ends), (["one", "two"], 0))
        self.console.set_prompt("> ")
        self.assertEqual(self.app.ends, 1)
        self.assertEqual(self.output(), "> one\n> two\n> \n")

    def test_the_end_of_input_is_told_once(self) -> None:
        self.console.readConnectionLost()
        self.console.set_prompt("> ")
        self.console.set_prompt("> ")
        self.console.writeConnectionLost()
        self.assertEqual(self.app.ends, 1)

    def test_output_while_a_prompt_waits_repeats_the_prompt_with_its_line(self) -> None:
        self.console.set_prompt("Command: ")
        self.console.show("seas (private): hi")
        self.console.dataReceived(b"whoelse\n")
        self.assertEqual(self.output(), "Command: \nseas (private): hi\nCommand: whoelse\n")

    def test_a_prompt_that_gets_no_line_is_not_repeated(self) -> None:
        self.console.set_prompt("Command: ")
        self.console.show("The server is shutting down. Goodbye.")
        self.console.show("Disconnected by the server.")
        self.console.close()
        self.assertEqual(
            self.output(), "Command: \nThe server is shutting down. Goodbye.\nDisconnected by the server.\n"
        )

    def test_output_has_no_escape_sequences(self) -> None:
        self.console.set_prompt("\x1b[31mCommand: ")
        self.console.show("a \x1b[2J b")
        self.assertNotIn("\x1b", self.output())

    def test_line_endings_and_bad_bytes(self) -> None:
        self.console.dataReceived(b"crlf\r\nbad \xff byte\n")
        self.console.set_prompt("> ")
        self.console.set_prompt("> ")
        self.assertEqual(self.app.lines, ["crlf", "bad \N{REPLACEMENT CHARACTER} byte"])

    def test_reading_pauses_when_far_ahead(self) -> None:
        self.console.dataReceived(b"x\n" * 100)
        self.assertEqual(self.transport.producerState, "paused")
        self.app.on_line = lambda line: self.console.set_prompt("> ")
        self.console.set_prompt("> ")
        self.assertEqual(len(self.app.lines), 100)
        self.assertEqual(self.transport.producerState, "producing")

    def test_interrupt_drops_the_prompt(self) -> None:
        self.console.set_prompt("Command: ")
        self.console.interrupt()
        self.console.dataReceived(b"whoelse\n")
        self.assertEqual((self.app.interrupts, self.app.lines), (1, []))
        self.assertEqual(self.output(), "Command: \n")

    def test_closed_output_ends_input(self) -> None:
        self.console.writeConnectionLost()
        self.assertEqual(self.app.ends, 1)

    def test_close_waits_for_the_output(self) -> None:
        self.console.set_prompt("Command: ")
        d = self.console.close()
        self.assertNoResult(d)
        self.assertTrue(self.transport.disconnecting)
        self.console.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.assertEqual(self.output(), "Command: \n")


class VisibleTests(unittest.TestCase):
    def test_controls_are_shown_not_obeyed(self) -> None:
        self.assertEqual(visible("a\x1b[1mb\x00c\x7fd\x9be\tf"), "a^[[1mb^@c^?d\N{REPLACEMENT CHARACTER}e\tf")

    def test_text_in_any_script_is_untouched(self) -> None:
        self.assertEqual(visible("héllo мир 日本語 🎉"), "héllo мир 日本語 🎉")


def _nonblocking(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)


class OpenConsoleTests(unittest.TestCase):
    """open_console on real descriptors, with the running reactor."""

    def pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        return r, w

    async def test_pipes_get_a_plain_console_and_their_flags_back(self) -> None:
        stdin, feed = self.pipe()
        drain, stdout = self.pipe()
        app = Recorder()
        console = open_console(app, reactor, stdin, stdout)
        self.assertIsInstance(console, PlainConsole)
        self.assertFalse(console.interactive)
        self.assertTrue(_nonblocking(stdin))
        os.write(feed, b"hello\n")
        entered: defer.Deferred[None] = defer.Deferred()
        app.on_line = lambda line: entered.callback(None)
        console.set_prompt("> ")
        await entered
        await console.close()
        self.assertEqual(app.lines, ["hello"])
        self.assertEqual(os.read(drain, 100), b"> hello\n")
        self.assertFalse(_nonblocking(stdin))
        self.assertFalse(_nonblocking(stdout))

    async def test_a_terminal_gets_raw_mode_and_then_its_settings_back(self) -> None:
        master, slave = os.openpty()
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)
        before = termios.tcgetattr(slave)
        console = open_console(Recorder(), reactor, slave, slave)
        self.assertIsInstance(console, TerminalConsole)
        raw = termios.tcgetattr(slave)
        self.assertFalse(raw[3] & (termios.ECHO | termios.ICANON | termios.ISIG))
        console.set_prompt("> ")
        await console.close()
        self.assertEqual(termios.tcgetattr(slave), before)
        self.assertFalse(_nonblocking(slave))
        self.assertEqual(Screen(os.read(master, 1000)).lines(), [])

    async def test_a_terminal_on_stdin_only_keeps_its_mode_but_hides_secrets(self) -> None:
        master, slave = os.openpty()
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)
        _, stdout = self.pipe()
        before = termios.tcgetattr(slave)
        console = open_console(Recorder(), reactor, slave, stdout)
        self.assertIsInstance(console, PlainConsole)
        self.assertTrue(console.interactive)
        self.assertEqual(termios.tcgetattr(slave), before)
        console.set_prompt("Password: ", secret=True)
        self.assertFalse(termios.tcgetattr(slave)[3] & termios.ECHO)
        await console.close()
        self.assertEqual(termios.tcgetattr(slave), before)
