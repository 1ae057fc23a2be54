"""'seas is typing…' on one server, in process: who is told, how often, and never a terminal."""

from __future__ import annotations

from twisted.trial import unittest

from chat.server import typists
from tests.unit.harness import Harness
from tests.unit.test_rooms import said
from tests.unit.test_web_edge import logged_in


class TypingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness()
        self.terminal = self.server.login("google")
        self.columbia = logged_in(self.server, "columbia")
        self.seas = logged_in(self.server, "seas")
        self.facebook = logged_in(self.server, "facebook")

    def notices(self) -> dict[str, list[dict[str, object]]]:
        return {
            name: [m for m in browser.read() if m["type"] == "typing"]
            for name, browser in (
                ("columbia", self.columbia),
                ("seas", self.seas),
                ("facebook", self.facebook),
            )
        }

    def test_a_direct_conversation_tells_the_other_person_only_named_from_their_side(self) -> None:
        self.notices()
        self.columbia.send(type="typing", conversation="@seas")
        self.assertEqual(
            self.notices(),
            {
                "columbia": [],
                "seas": [{"type": "typing", "from": "columbia", "conversation": "@columbia"}],
                "facebook": [],
            },
        )
        self.assertEqual(self.terminal.read(), "")

    def test_everyone_tells_every_page_but_the_typist_and_no_terminal(self) -> None:
        self.notices()
        self.seas.send(type="typing", conversation="everyone")
        told = self.notices()
        self.assertEqual([len(told[name]) for name in ("columbia", "seas", "facebook")], [1, 0, 1])
        self.assertEqual(self.terminal.read(), "")

    def test_a_room_tells_its_members_and_only_a_member_may_say_so(self) -> None:
        said(self.terminal, "join #dev")
        self.columbia.send(type="join", room="#dev")
        self.seas.send(type="join", room="#dev")
        self.notices()
        self.facebook.send(type="typing", conversation="#dev")
        self.assertEqual(self.notices(), {"columbia": [], "seas": [], "facebook": []})
        self.columbia.send(type="typing", conversation="#dev")
        self.assertEqual(
            self.notices()["seas"], [{"type": "typing", "from": "columbia", "conversation": "#dev"}]
        )

    def test_at_most_one_notice_every_few_seconds_and_nothing_for_an_unknown_conversation(self) -> None:
        self.notices()
        for _ in range(5):
            self.columbia.send(type="typing", conversation="@seas")
        self.columbia.send(type="typing", conversation="@nobody")
        self.columbia.send(type="typing", conversation="#nowhere")
        self.columbia.send(type="typing", conversation="@columbia")
        self.assertEqual(len(self.notices()["seas"]), 1)
        self.assertEqual(self.columbia.read(), [])  # no answer, even to the refused ones
        self.server.clock.advance(typists.INTERVAL)
        self.columbia.send(type="typing", conversation="@seas")
        self.assertEqual(len(self.notices()["seas"]), 1)
