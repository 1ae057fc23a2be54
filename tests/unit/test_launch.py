"""Tests for chat.launch, with a program module written for the test."""

from __future__ import annotations

import os
import signal
import sys

from twisted.trial import unittest

from chat.launch import launch

PROGRAM = """\
import signal

while_loading = signal.getsignal(signal.SIGINT)
while_running = None


def main():
    global while_running
    while_running = signal.getsignal(signal.SIGINT)
"""


class LaunchTests(unittest.TestCase):
    def test_ctrl_c_is_quiet_while_loading_and_pythons_own_once_running(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "chat_launched_program.py"), "w") as f:
            f.write(PROGRAM)
        self.patch(sys, "path", [directory, *sys.path])
        self.addCleanup(sys.modules.pop, "chat_launched_program", None)
        self.addCleanup(signal.signal, signal.SIGINT, signal.getsignal(signal.SIGINT))
        launch("chat_launched_program")
        program = sys.modules["chat_launched_program"]
        self.assertIs(program.while_loading, signal.SIG_DFL)
        self.assertIs(program.while_running, signal.default_int_handler)
