"""
The command parser: examples from the seeds, and properties over any text.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from chat.server.commands import (
    COMMAND_NAMES,
    COMMAND_TYPES,
    BadUsage,
    Blank,
    Broadcast,
    BroadcastTo,
    Help,
    Limits,
    Logout,
    Message,
    PersonalIntro,
    TooLong,
    UnknownCommand,
    WhoElse,
    WhoLast,
    _parse_entry,
    closest,
    parse,
)
from chat.server.edges.text import render as describe

#: What parsing a line may give: every command there is (those added since
#: the seeds' too: a hand-kept list here missed C{search 0}), a blank line,
#: or an error event.
ALL_RESULTS = (*COMMAND_TYPES, Blank, UnknownCommand, BadUsage, TooLong)


class ExampleTests(unittest.TestCase):
    def test_seed_commands(self) -> None:
        self.assertEqual(parse("whoelse"), WhoElse())
        self.assertEqual(parse("wholast 10"), WhoLast(10))
        self.assertEqual(parse("broadcast message cao cao da!!"), Broadcast("cao cao da!!"))
        self.assertEqual(
            parse("broadcast user seas google message hi"), BroadcastTo(("seas", "google"), "hi")
        )
        self.assertEqual(parse("message seas mo mo da!"), Message("seas", "mo mo da!"))
        self.assertEqual(parse("personalintro"), PersonalIntro(None))
        self.assertEqual(parse("personalintro The best course ever"), PersonalIntro("The best course ever"))
        self.assertEqual(parse("logout"), Logout())
        self.assertEqual(parse("help"), Help())
        self.assertEqual(parse("help wholast"), Help("wholast"))

    def test_command_word_is_case_insensitive(self) -> None:
        self.assertEqual(parse("WHOELSE"), WhoElse())
        self.assertEqual(parse("Broadcast Message hi"), Broadcast("hi"))
        self.assertEqual(parse("BROADCAST USER seas MESSAGE hi"), BroadcastTo(("seas",), "hi"))

    def test_extra_spaces_are_tolerated_but_inner_text_is_kept(self) -> None:
        self.assertEqual(parse("   message    seas    hi   there  "), Message("seas", "hi   there"))
        self.assertEqual(parse("wholast    5  "), WhoLast(5))

    def test_usernames_keep_their_case(self) -> None:
        self.assertEqual(parse("message Seas hi"), Message("Seas", "hi"))

    def test_repeated_recipients_are_listed_once(self) -> None:
        self.assertEqual(parse("broadcast user a b a message x"), BroadcastTo(("a", "b"), "x"))

    def test_blank_lines(self) -> None:
        self.assertEqual(parse(""), Blank())
        self.assertEqual(parse(" \t "), Blank())

    def test_unknown_command_suggests_the_closest(self) -> None:
        self.assertEqual(parse("whoeles"), UnknownCommand("whoeles", "whoelse"))
        self.assertEqual(parse("mesage seas hi"), UnknownCommand("mesage", "message"))
        self.assertEqual(parse("logot"), UnknownCommand("logot", "logout"))
        self.assertEqual(parse("broad"), UnknownCommand("broad", "broadcast"))
        self.assertEqual(parse("xyzzy"), UnknownCommand("xyzzy", None))

    def test_unknown_command_description(self) -> None:
        self.assertEqual(
            describe(UnknownCommand("whoeles", "whoelse")),
            "Unknown command 'whoeles'; did you mean 'whoelse'?",
        )
        self.assertEqual(
            describe(UnknownCommand("xyzzy", None)),
            "Unknown command 'xyzzy'; type 'help' for the list of commands.",
        )

    def test_wrong_arguments_get_the_usage(self) -> None:
        for line, command in [
            ("whoelse now", "whoelse"),
            ("wholast", "wholast"),
            ("wholast ten", "wholast"),
            ("wholast -1", "wholast"),
            ("wholast 1 2", "wholast"),
            ("wholast 61", "wholast"),
            ("broadcast", "broadcast"),
            ("broadcast message", "broadcast"),
            ("broadcast user message hi", "broadcast"),
            ("broadcast user seas hi", "broadcast"),
            ("broadcast columbia message hi", "broadcast"),
            ("message", "message"),
            ("message seas", "message"),
            ("logout now", "logout"),
            ("help a b", "help"),
        ]:
            result = parse(line)
            self.assertIsInstance(result, BadUsage, line)
            assert isinstance(result, BadUsage)
            self.assertEqual(result.command, command, line)
            self.assertIn("Usage: ", describe(result))

    def test_misspelt_broadcast_mode_gets_a_hint(self) -> None:
        result = parse("broadcast mesage hi")
        assert isinstance(result, BadUsage)
        self.assertIn("did you mean 'message'?", describe(result))

    def test_wholast_accepts_zero_and_the_limit(self) -> None:
        self.assertEqual(parse("wholast 0"), WhoLast(0))
        self.assertEqual(parse("wholast 60"), WhoLast(60))
        self.assertEqual(parse("wholast 90", Limits(last_hour=90)), WhoLast(90))

    def test_wholast_refuses_non_ascii_digits(self) -> None:
        self.assertIsInstance(parse("wholast \uff15"), BadUsage)  # fullwidth five

    def test_text_over_the_limit_is_too_long(self) -> None:
        self.assertEqual(parse("message seas " + "x" * 501), TooLong(501, 500))
        self.assertEqual(parse("broadcast message " + "é" * 11, Limits(max_message=10)), TooLong(11, 10))
        self.assertEqual(parse("message seas " + "x" * 500), Message("seas", "x" * 500))

    def test_help_for_an_unknown_topic(self) -> None:
        self.assertEqual(parse("help whoels"), UnknownCommand("whoels", "whoelse"))

    def test_closest(self) -> None:
        self.assertEqual(closest("saes", ["columbia", "seas"]), "seas")
        self.assertIsNone(closest("q", ["columbia", "seas"]))

    def test_closest_does_not_mind_case(self) -> None:
        self.assertEqual(closest("SEAS", ["columbia", "seas"]), "seas")
        self.assertEqual(closest("Colombia", ["columbia", "seas"]), "columbia")
        self.assertEqual(closest("WHOELSE", ["whoelse", "wholast"]), "whoelse")


commands_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=80)
names = st.text(alphabet=st.characters(categories=("Ll", "Lu", "Nd")), min_size=1, max_size=12).filter(
    lambda n: n.lower() not in ("message",)
)
texts = (
    st.text(alphabet=st.characters(categories=("L", "M", "N", "P", "S", "Zs")), min_size=1, max_size=500)
    .map(str.strip)
    .filter(bool)
)


class PropertyTests(unittest.TestCase):
    @given(commands_text)
    def test_parse_never_raises_and_always_answers(self, line: str) -> None:
        result = parse(line)
        self.assertIsInstance(result, ALL_RESULTS)
        if isinstance(result, (UnknownCommand, BadUsage, TooLong)):
            description = describe(result)
            self.assertTrue(description)
            self.assertNotIn("\n", description)

    @given(st.sampled_from(COMMAND_NAMES), commands_text)
    def test_known_command_words_are_never_unknown_to_an_admin(self, word: str, rest: str) -> None:
        result = parse(word.upper() + " " + rest, admin=True)
        if isinstance(result, UnknownCommand):
            # Only help's topic can be unknown.
            self.assertEqual(word, "help")

    @given(names, texts)
    def test_message_round_trip(self, name: str, text: str) -> None:
        self.assertEqual(parse(f"message {name} {text}"), Message(name, text))

    @given(
        st.sampled_from(["message", "message ", "message #", "MESSAGE ", "message\t"]),
        st.text(alphabet=st.sampled_from(" \t\u3000\x85ab#é"), max_size=12),
        st.integers(min_value=1, max_value=8),
    )
    def test_private_message_short_path_parses_as_the_command_table_does(
        self, start: str, rest: str, limit: int
    ) -> None:
        # parse() takes a line that starts "message" in one split; any such
        # line, spaces of every kind and lengths around the limit, must get
        # the table's answer.
        line = start + rest
        limits = Limits(max_message=limit)
        self.assertEqual(parse(line, limits), _parse_entry(line, limits, False))

    @given(commands_text)
    def test_short_path_agrees_with_the_command_table_on_any_line(self, line: str) -> None:
        self.assertEqual(parse(line), _parse_entry(line, Limits(), False))

    @given(st.lists(names, min_size=1, max_size=5, unique=True), texts)
    def test_broadcast_user_round_trip(self, recipients: list[str], text: str) -> None:
        line = f"broadcast user {' '.join(recipients)} message {text}"
        self.assertEqual(parse(line), BroadcastTo(tuple(recipients), text))

    @given(st.integers(min_value=0, max_value=60))
    def test_wholast_round_trip(self, minutes: int) -> None:
        self.assertEqual(parse(f"wholast {minutes}"), WhoLast(minutes))

    @given(st.integers(min_value=1, max_value=10_000), texts)
    def test_text_length_limit_is_exact(self, limit: int, text: str) -> None:
        result = parse(f"broadcast message {text}", Limits(max_message=limit))
        if len(text) > limit:
            self.assertEqual(result, TooLong(len(text), limit))
        else:
            self.assertEqual(result, Broadcast(text))
