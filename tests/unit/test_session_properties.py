"""
The whole session state machine under random input: whatever arrives, no
exception escapes, nothing is logged as an error, and every line gets a
reply or a clean close.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.trial import unittest
from zope.interface import provider

from chat.server.commands import COMMAND_NAMES
from tests.unit.harness import PASSWORDS, Harness

names = st.sampled_from([*PASSWORDS, "nobody", "", "two words"])
passwords = st.sampled_from([*PASSWORDS.values(), "wrong", ""])
words = st.sampled_from([*COMMAND_NAMES, "user", "message", *PASSWORDS, "whoeles", "wholast 5"])
command_lines = st.lists(st.one_of(words, st.text(max_size=10)), max_size=8).map(" ".join)
lines = st.one_of(names, passwords, command_lines, st.text(max_size=50))
raw = st.one_of(
    lines.map(lambda text: text.encode("utf-8", "surrogatepass") + b"\r\n"),
    st.binary(max_size=60).map(lambda b: b + b"\n"),
    st.just(b"\xff\xfb\x01\xff\xfd\x03\n"),  # telnet negotiation
    st.just(b"x" * 5000 + b"\n"),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 2), raw),
        st.tuples(st.just("login"), st.integers(0, 2), names),
        st.tuples(st.just("lose"), st.integers(0, 2), st.none()),
        st.tuples(st.just("wait"), st.integers(0, 2), st.floats(0, 4000)),
    ),
    max_size=40,
)


class RandomSessionTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(steps)
    def test_any_input_gets_a_reply_or_a_clean_close(self, plan: list[tuple[str, int, Any]]) -> None:
        errors: list[dict[str, Any]] = []

        @provider(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") in (LogLevel.error, LogLevel.critical) or "log_failure" in event:
                errors.append(event)

        globalLogPublisher.addObserver(observe)
        try:
            server = Harness()
            conns = [server.connect(f"10.0.0.{i}") for i in range(3)]
            for action, index, value in plan:
                conn = conns[index]
                if action == "lose":
                    conn.lose()
                    continue
                if action == "wait":
                    server.clock.advance(value)
                    continue
                if conn.lost or conn.closing:
                    continue
                conn.read()
                if action == "login":
                    data = f"{value}\r\n{PASSWORDS.get(value, 'x')}\r\n".encode()
                else:
                    data = value
                conn.send_bytes(data)
                self.assertTrue(conn.read() or conn.closing, f"no reply to {data!r}")
            for conn in conns:
                conn.lose()
            self.assertEqual(dict(server.service.registry.online), {})
        finally:
            globalLogPublisher.removeObserver(observe)
        self.assertEqual(errors, [])
