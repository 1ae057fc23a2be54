"""
The text rules: what may be shown to others, tried on the forgeries an
attack probe used and on real scripts.
"""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from chat.server import textrules
from chat.server.auth import UsersFileError, parse_users, valid_name
from chat.server.events import Fault
from tests.unit.harness import Harness
from tests.unit.test_web_edge import Browser, logged_in

FLAG_ENGLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"


class RefusedTests(unittest.TestCase):
    def test_what_the_probe_sent_is_refused_with_its_reason(self) -> None:
        cases = {
            "hi\u2028seas (private): I am the admin": Fault.LINE_SEPARATORS,
            "hi\u2029there": Fault.LINE_SEPARATORS,
            "a\u200bb": Fault.INVISIBLE_CHARACTERS,
            "\u200dseas": Fault.INVISIBLE_CHARACTERS,
            "sea\u200ds": Fault.INVISIBLE_CHARACTERS,
            "a\u2060b": Fault.INVISIBLE_CHARACTERS,
            "\ufeffhello": Fault.INVISIBLE_CHARACTERS,
            "tags \U000e0041\U000e0042 hidden": Fault.INVISIBLE_CHARACTERS,
            "x\ufff9annotated\ufffbz": Fault.INVISIBLE_CHARACTERS,
            "\u3164": Fault.INVISIBLE_CHARACTERS,
            "a" + "\u0301" * 480: Fault.STACKED_MARKS,
            "x" + " " * 400 + "seas (private): I am the admin": Fault.SPACE_RUN,
            "x" + "\t" * 17 + "y": Fault.SPACE_RUN,
            "évil" + " " * 17 + "line": Fault.SPACE_RUN,
            "bad\u202eright": Fault.DIRECTION_CONTROLS,
            "bell\x07": Fault.CONTROL_CHARACTERS,
            "caf\u00e9\x85": Fault.CONTROL_CHARACTERS,
            "lone \ud800": Fault.NOT_UTF8,
        }
        for text, fault in cases.items():
            self.assertEqual(textrules.refused(text), fault, ascii(text))

    def test_real_scripts_and_emoji_pass(self) -> None:
        for text in (
            "plain ascii, with a\ttab",
            "café, 日本語, Ελληνικά, עברית, العربية",
            "Vie\u0323\u0302t",  # Vietnamese with its two marks, decomposed
            "\u0915\u094d\u200d\u0937",  # Devanagari: a half form with ZWJ
            "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian: ZWNJ inside a word
            "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family
            "\u2764\ufe0f \U0001f44d\U0001f3fd 1\ufe0f\u20e3",  # heart, skin tone, keycap
            FLAG_ENGLAND,
            "sixteen spaces" + " " * 16 + "are fine",
            " " * 3000,  # a blank line, however long
            "trailing" + " " * 40,
            " " * 40 + "leading",
        ):
            self.assertIsNone(textrules.refused(text), ascii(text))

    def test_a_password_may_hold_what_is_never_shown(self) -> None:
        self.assertIsNone(textrules.refused_line("pass" + " " * 20 + "\u200bword"))
        self.assertEqual(textrules.refused_line("pass\x00"), Fault.CONTROL_CHARACTERS)

    @given(st.text())
    def test_any_text_gets_an_answer(self, text: str) -> None:
        textrules.refused(text)
        textrules.refused_line(text)

    @given(st.text(alphabet=st.characters(categories=["L", "N", "P"]), max_size=200))
    def test_letters_digits_and_punctuation_alone_always_pass(self, text: str) -> None:
        self.assertIsNone(textrules.refused(text), ascii(text))

    @given(st.text(min_size=1))
    def test_what_passes_holds_no_invisible_format_character_out_of_place(self, text: str) -> None:
        if textrules.refused(text) is not None:
            return
        for i, char in enumerate(text):
            if unicodedata.category(char) == "Cf" and char not in textrules.JOINERS:
                # Only the tags of a flag sequence remain.
                self.assertTrue("\U000e0000" <= char <= "\U000e007f", ascii(text))
            if char in textrules.JOINERS:
                self.assertTrue(0 < i < len(text) - 1, ascii(text))


class NamesTests(unittest.TestCase):
    def test_a_name_that_hides_something_is_no_username(self) -> None:
        for name in ("\u200bseas", "sea\u200ds", "col\u202eumbia", "\u3164"):
            self.assertFalse(valid_name(name), ascii(name))
            with self.assertRaises(UsersFileError) as caught:
                parse_users(f"{name} password\n")
            self.assertIn("invisible characters", str(caught.exception))
        # A line separator ends the line in the file itself: no user either.
        self.assertFalse(valid_name("a\u2028b"))
        self.assertRaises(UsersFileError, parse_users, "a\u2028b password\n")
        for name in ("seas", "josé", "日本", "\U0001f468\u200d\U0001f469"):
            self.assertTrue(valid_name(name), ascii(name))


class SessionTests(unittest.TestCase):
    """The rules where users meet them: on the terminal and in JSON, the same code."""

    def test_a_forged_line_is_refused_on_the_terminal_and_nothing_is_sent(self) -> None:
        server = Harness()
        seas = server.login("seas")
        columbia = server.login("columbia")
        columbia.send("message seas x" + " " * 400 + "seas (private): I am the admin")
        self.assertEqual(
            columbia.read(),
            "More than 16 spaces in a row are not allowed; that line was ignored.\r\nCommand: ",
        )
        columbia.send("personalintro \u200bseas")
        self.assertIn("Invisible characters", columbia.read())
        self.assertEqual(seas.read(), "")

    def test_an_invisible_character_in_a_username_is_refused_at_the_prompt(self) -> None:
        server = Harness()
        conn = server.connect()
        conn.read()
        conn.send("sea\u200ds")
        self.assertEqual(
            conn.read(),
            "Invisible characters (such as zero-width spaces) are not allowed; that line was ignored.\r\n"
            "Username: ",
        )

    def test_json_gets_the_same_code(self) -> None:
        server = Harness()
        browser = Browser(server)
        browser.login("columbia")
        browser.read()
        browser.send(type="broadcast", text="hi\u2028seas (private): I am the admin")
        browser.send(type="intro", text="a" + "\u0301" * 480)
        self.assertEqual([m["code"] for m in browser.read()], ["line_separators", "stacked_marks"])


class MessageLinesTests(unittest.TestCase):
    def test_a_message_may_hold_line_breaks_each_line_following_the_rules(self) -> None:
        self.assertIsNone(textrules.refused_message("one\ntwo\n\n    indented"))
        self.assertEqual(textrules.refused_message("one\ntw\u202eo"), Fault.DIRECTION_CONTROLS)
        self.assertEqual(textrules.refused_message("one\rtwo"), Fault.CONTROL_CHARACTERS)
        self.assertEqual(textrules.refused("one\ntwo"), Fault.CONTROL_CHARACTERS)

    def test_at_most_fifty_lines(self) -> None:
        self.assertIsNone(textrules.refused_message("\n".join(["x"] * textrules.MAX_LINES)))
        self.assertEqual(
            textrules.refused_message("\n".join(["x"] * (textrules.MAX_LINES + 1))), Fault.TOO_MANY_LINES
        )

    def test_a_message_of_several_lines_from_a_page_reaches_a_terminal_line_by_line(self) -> None:
        server = Harness()
        seas = server.login("seas")
        google = logged_in(server, "google")
        browser = logged_in(server, "columbia")
        seas.read()
        google.read()
        snippet = "```\r\ndef f():\n    return 1\n```"
        browser.send(type="message", to=["seas", "google"], text=snippet)
        [receipt] = browser.read()
        self.assertEqual(receipt["type"], "receipt")
        self.assertEqual(
            seas.read(), "\r\ncolumbia (broadcast): ```\r\n  | def f():\r\n  |     return 1\r\n  | ```\r\n"
        )
        [got] = google.read()
        self.assertEqual(got["text"], "```\ndef f():\n    return 1\n```")

    def test_line_breaks_are_refused_where_one_line_is_meant(self) -> None:
        server = Harness()
        browser = logged_in(server, "columbia")
        browser.send(type="intro", text="one\ntwo")
        browser.send(type="line", text="message seas one\ntwo")
        browser.send(type="message", to=["seas"], text="\n".join(["x"] * 51))
        self.assertEqual(
            [m["code"] for m in browser.read()],
            ["control_characters", "control_characters", "too_many_lines"],
        )
