"""
Tests for chat.peer.framing: handles, what we send, and the decoder against
every form the classic programs are seen to send, then properties over any
bytes cut into any reads.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from chat.peer.framing import (
    MAX_PENDING,
    Decoder,
    Event,
    Handle,
    HandleError,
    Message,
    Quit,
    Said,
    Typed,
    encode_message,
    encode_quit,
)

STEVE = Handle("SteveO")
HOST = Handle("HostA")


def decode(*reads: bytes, peer: str | None = None, quiet_at_end: bool = True) -> list[Event]:
    """The events from C{reads}, arriving in that order, then a quiet line."""
    decoder = Decoder(peer)
    events: list[Event] = []
    for data in reads:
        decoder, found = decoder.feed(data)
        events.extend(found)
    if quiet_at_end:
        decoder, found = decoder.flush()
        events.extend(found)
    return events


def said(*texts: str, handle: str | None = "SteveO") -> list[Event]:
    return [Message(handle, text) for text in texts]


class HandleTests(unittest.TestCase):
    def test_one_word_of_up_to_ten_characters(self) -> None:
        for name in ("S", "SteveO", "0123456789", "héllo", "日本語", "a_b-c.d!"):
            self.assertEqual(Handle.parse(name).name, name)

    def test_spaces_around_it_are_ignored(self) -> None:
        self.assertEqual(Handle.parse("  SteveO \t"), STEVE)

    def test_refusals_say_why(self) -> None:
        cases = {
            "": "at least one character",
            "   ": "at least one character",
            "Steve O": "one word",
            "Steve\u00a0O": "one word",
            "Steve>": "cannot contain '>'",
            "Steve\x1b": "printable",
            "Steve\u200b": "printable",
            "ElevenChars": "at most 10 characters; that one has 11",
        }
        for text, why in cases.items():
            with self.assertRaises(HandleError, msg=text) as caught:
                Handle.parse(text)
            self.assertIn(why, str(caught.exception))

    def test_a_handle_cannot_be_made_invalid_directly(self) -> None:
        self.assertRaises(HandleError, Handle, "two words")


class EncodeTests(unittest.TestCase):
    def test_a_message_is_handle_and_text_with_no_terminator(self) -> None:
        self.assertEqual(encode_message(STEVE, "Hi!!"), b"SteveO> Hi!!")

    def test_a_message_is_utf8(self) -> None:
        self.assertEqual(encode_message(Handle("日本"), "héllo"), "日本> héllo".encode())

    def test_the_quit_is_exactly_what_strict_classic_clients_compare_with(self) -> None:
        self.assertEqual(encode_quit(HOST), b"HostA> \\quit")

    def test_the_quit_before_a_handle_is_chosen_is_bare(self) -> None:
        self.assertEqual(encode_quit(None), b"\\quit")


class TypedTests(unittest.TestCase):
    def test_a_line_is_a_trimmed_message(self) -> None:
        self.assertEqual(Typed.parse("  Hi!!  "), Typed(Said.MESSAGE, "Hi!!"))

    def test_an_empty_or_blank_line_says_nothing(self) -> None:
        for line in ("", "   ", "\t", "\x1c\x85"):
            self.assertIs(Typed.parse(line).said, Said.NOTHING, repr(line))

    def test_quit_with_spaces_around_it_is_the_quit(self) -> None:
        self.assertIs(Typed.parse(" \\quit ").said, Said.QUIT)

    def test_control_characters_are_sent_as_they_are_shown(self) -> None:
        self.assertEqual(Typed.parse("a\x1bb").text, "a^[b")

    def test_500_characters_are_a_message_and_501_too_long(self) -> None:
        self.assertIs(Typed.parse("x" * 500).said, Said.MESSAGE)
        too_long = Typed.parse("é" * 501)
        self.assertIs(too_long.said, Said.TOO_LONG)
        self.assertEqual(too_long.refusal(), "Not sent: that message has 501 characters; the most is 500.")


class ClassicFormsTests(unittest.TestCase):
    """Each form seen from the classic programs, one read per write."""

    def test_unframed(self) -> None:
        self.assertEqual(decode(b"SteveO> Hi!!"), said("Hi!!"))

    def test_padded_with_nuls_to_500_bytes(self) -> None:
        self.assertEqual(decode(b"SteveO> Hi!!".ljust(500, b"\0")), said("Hi!!"))

    def test_padded_with_nuls_to_511_bytes(self) -> None:
        self.assertEqual(decode(b"SteveO> Hi!!".ljust(511, b"\0")), said("Hi!!"))

    def test_no_space_after_the_handle_and_a_newline(self) -> None:
        self.assertEqual(decode(b"SteveO>Hi!!\n"), said("Hi!!"))

    def test_crlf_line_ends(self) -> None:
        self.assertEqual(decode(b"SteveO> Hi!!\r\nSteveO> again\r\n"), said("Hi!!", "again"))

    def test_quit_with_the_handle(self) -> None:
        self.assertEqual(decode(b"SteveO> \\quit"), [Quit("SteveO")])

    def test_quit_with_the_handle_and_no_space(self) -> None:
        self.assertEqual(decode(b"SteveO>\\quit\n"), [Quit("SteveO")])

    def test_bare_quit(self) -> None:
        self.assertEqual(decode(b"\\quit"), [Quit(None)])

    def test_bare_quit_from_a_peer_whose_handle_is_known(self) -> None:
        decoder, first = Decoder().feed(b"SteveO> Hi!!")
        decoder, quiet = decoder.flush()
        decoder, then = decoder.feed(b"\\quit")
        decoder, last = decoder.flush()
        self.assertEqual([*first, *quiet, *then, *last], [*said("Hi!!"), Quit(None)])

    def test_a_quit_inside_a_message_is_not_a_quit(self) -> None:
        self.assertEqual(decode(b"SteveO> to leave, type \\quit"), said("to leave, type \\quit"))

    def test_quit_then_newline_then_junk(self) -> None:
        self.assertEqual(decode(b"\\quit\n\x00\x8f\xff\x7fleftover text\x01"), [Quit(None)])

    def test_padded_quit(self) -> None:
        self.assertEqual(decode(b"SteveO> \\quit".ljust(511, b"\0")), [Quit("SteveO")])

    def test_two_messages_joined_in_one_read(self) -> None:
        self.assertEqual(decode(b"SteveO> Hi!!SteveO> \\quit"), [*said("Hi!!"), Quit("SteveO")])

    def test_three_messages_joined_the_handle_learned_from_the_first(self) -> None:
        self.assertEqual(decode(b"SteveO> aSteveO> bSteveO> c"), said("a", "b", "c"))

    def test_two_padded_messages_joined(self) -> None:
        data = b"SteveO> Hi!!".ljust(500, b"\0") + b"SteveO> \\quit".ljust(500, b"\0")
        self.assertEqual(decode(data), [*said("Hi!!"), Quit("SteveO")])

    def test_what_follows_the_nul_in_a_reused_buffer_is_not_shown(self) -> None:
        """
        A buffer that held a longer message, then got a shorter one and its
        NUL, sent whole: the old message's tail is not a message.
        """
        data = b"SteveO> hi\n\0lo there, how are you?\n\0\x13\x7f\xfe\xff\0\0"
        self.assertEqual(decode(data), said("hi"))

    def test_a_message_after_junk_and_padding_is_found(self) -> None:
        data = b"SteveO> hi\0stale bytes\0\0SteveO> next\0\0\0"
        self.assertEqual(decode(data), said("hi", "next"))

    def test_a_bare_quit_right_after_padding_counts(self) -> None:
        self.assertEqual(decode(b"SteveO> hi\0\0\0\\quit\0\0"), [*said("hi"), Quit(None)])

    def test_everything_after_a_quit_is_ignored(self) -> None:
        self.assertEqual(decode(b"SteveO> \\quitSteveO> more", b"SteveO> later"), [Quit("SteveO")])

    def test_a_server_speaking_first_teaches_its_handle(self) -> None:
        self.assertEqual(decode(b"HostA> helloHostA> there"), said("hello", "there", handle="HostA"))


class SplitReadsTests(unittest.TestCase):
    """A message cut across reads waits for its rest, until the line is quiet."""

    def test_a_message_in_two_reads_is_one_message(self) -> None:
        self.assertEqual(decode(b"SteveO> Hi", b"!! how are you"), said("Hi!! how are you"))

    def test_nothing_is_given_out_until_the_line_is_quiet(self) -> None:
        self.assertEqual(decode(b"SteveO> Hi!!", quiet_at_end=False), [])

    def test_the_quiet_line_ends_the_message(self) -> None:
        decoder, events = Decoder().feed(b"SteveO> Hi!!")
        self.assertTrue(decoder.waiting)
        decoder, events = decoder.flush()
        self.assertEqual(list(events), said("Hi!!"))
        self.assertFalse(decoder.waiting)
        decoder, events = decoder.feed(b"SteveO> again")
        decoder, more = decoder.flush()
        self.assertEqual([*events, *more], said("again"))

    def test_a_terminated_message_is_given_out_at_once(self) -> None:
        self.assertEqual(decode(b"SteveO> Hi!!\n", quiet_at_end=False), said("Hi!!"))

    def test_a_message_ends_where_the_next_begins(self) -> None:
        self.assertEqual(decode(b"SteveO> Hi!!", b"SteveO> you there?", quiet_at_end=False), said("Hi!!"))

    def test_the_handle_itself_cut_across_reads(self) -> None:
        self.assertEqual(decode(b"SteveO> Hi!!Ste", b"veO> \\quit"), [*said("Hi!!"), Quit("SteveO")])

    def test_a_character_cut_across_reads(self) -> None:
        data = "SteveO> héllo 日本".encode()
        self.assertEqual(decode(data[:10], data[10:16], data[16:]), said("héllo 日本"))

    def test_padding_cut_across_reads(self) -> None:
        padded = b"SteveO> Hi!!".ljust(511, b"\0")
        self.assertEqual(decode(padded[:200], padded[200:], b"SteveO> next"), said("Hi!!", "next"))

    def test_junk_after_padding_cut_across_reads_is_still_dropped(self) -> None:
        self.assertEqual(decode(b"SteveO> hi\0\0stale", b" bytes\0\0", b"SteveO> next"), said("hi", "next"))

    def test_a_bare_quit_after_padding_cut_across_reads(self) -> None:
        self.assertEqual(decode(b"SteveO> hi\0\0\\qu", b"it"), [*said("hi"), Quit(None)])

    def test_a_quiet_line_ends_the_padding(self) -> None:
        """A peer that sends no handle: its next message, after a pause, is shown."""
        decoder, first = Decoder().feed(b"hello".ljust(500, b"\0"))
        self.assertTrue(decoder.waiting)
        decoder, _ = decoder.flush()
        decoder, second = decoder.feed(b"again".ljust(500, b"\0"))
        self.assertEqual([*first, *second], said("hello", "again", handle=None))

    def test_a_huge_unfinished_message_is_not_held_forever(self) -> None:
        events = decode(b"SteveO> " + b"x" * (MAX_PENDING + 10), quiet_at_end=False)
        self.assertEqual(len(events), 1)


class ShownTextTests(unittest.TestCase):
    def test_control_characters_are_shown_as_caret_letters(self) -> None:
        self.assertEqual(decode(b"SteveO> \x1b[2Jred\x07"), said("^[[2Jred^G"))

    def test_invalid_utf8_becomes_replacement_characters(self) -> None:
        self.assertEqual(decode(b"SteveO> caf\xe9!"), said("caf\N{REPLACEMENT CHARACTER}!"))

    def test_a_read_of_nothing_printable_is_dropped(self) -> None:
        self.assertEqual(decode(b"\xff\xfe\x01\x02 \x7f"), [])

    def test_blank_lines_are_dropped(self) -> None:
        self.assertEqual(decode(b"\r\n\n   \nSteveO> hi\n\n"), said("hi"))

    def test_a_message_without_the_known_handle_is_shown_as_it_came(self) -> None:
        events = decode(b"SteveO> hi\n", b"Other> hello\n")
        self.assertEqual(events, [*said("hi"), Message(None, "Other> hello")])

    def test_text_without_a_handle_is_shown_as_it_came(self) -> None:
        self.assertEqual(decode(b"just text, no handle\n"), [Message(None, "just text, no handle")])

    def test_an_eleven_character_name_is_not_taken_for_a_handle(self) -> None:
        self.assertEqual(decode(b"ElevenChars> hi"), [Message(None, "ElevenChars> hi")])

    def test_a_message_shows_as_handle_and_text(self) -> None:
        self.assertEqual(str(Message("SteveO", "Hi!!")), "SteveO> Hi!!")
        self.assertEqual(str(Message(None, "Hi!!")), "Hi!!")


# --- properties ---------------------------------------------------------------

_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")

handles = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp", "Cf", "Co", "Cn"), blacklist_characters=">"
    ),
    min_size=1,
    max_size=10,
).filter(lambda name: name.isprintable() and not any(ch.isspace() for ch in name))
#: Lines a person might type: any text without the line ends the console
#: splits lines at.
typed = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=80)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _decode_all(reads: list[bytes], peer: str | None, quiet_after: set[int]) -> list[Event]:
    decoder = Decoder(peer)
    events: list[Event] = []
    for i, data in enumerate(reads):
        decoder, found = decoder.feed(data)
        events.extend(found)
        if i in quiet_after:
            decoder, found = decoder.flush()
            events.extend(found)
    decoder, found = decoder.flush()
    return [*events, *found]


class DecoderPropertyTests(unittest.TestCase):
    @settings(max_examples=400, deadline=None)
    @given(
        st.lists(st.binary(max_size=40), max_size=12),
        st.one_of(st.none(), handles),
        st.sets(st.integers(0, 12)),
    )
    def test_any_reads_give_clean_one_line_messages_and_never_raise(
        self, reads: list[bytes], peer: str | None, quiet_after: set[int]
    ) -> None:
        for event in _decode_all(reads, peer, quiet_after):
            if isinstance(event, Message):
                self.assertTrue(event.text.strip(), event)
                self.assertEqual(event.text, event.text.strip())
                self.assertIsNone(_CONTROL.search(event.text), event)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.sampled_from(
                [b"SteveO> ", b"SteveO>", b"\\quit", b"\0" * 7, b"\n", b"\r\n", b"Hi!!", b"\xff", b"\x1b["]
            ),
            max_size=30,
        ),
        st.lists(st.integers(0, 500), max_size=6),
    )
    def test_classic_fragments_in_any_order_and_any_reads_never_raise(
        self, pieces: list[bytes], cuts: list[int]
    ) -> None:
        events = _decode_all(_cut(b"".join(pieces), cuts), None, set())
        quits = [i for i, event in enumerate(events) if isinstance(event, Quit)]
        self.assertIn(quits, ([], [len(events) - 1]))

    @settings(max_examples=300, deadline=None)
    @given(handles, st.lists(typed, min_size=1, max_size=8), st.lists(st.integers(0, 5000), max_size=8))
    def test_our_own_sends_come_back_whatever_the_reads(
        self, handle: str, lines: list[str], cuts: list[int]
    ) -> None:
        """
        Joined, cut anywhere, the handle learned on the way: every message
        comes back exactly as sent, then the quit.  (A message holding our
        own C{handle>} would be split there, so there is none.)
        """
        ours = Handle(handle)
        sent = [Typed.parse(line) for line in lines]
        texts = [t.text for t in sent if t.said is Said.MESSAGE and f"{handle}>" not in t.text]
        data = b"".join(encode_message(ours, text) for text in texts) + encode_quit(ours)
        events = _decode_all(_cut(data, cuts), None, set())
        self.assertEqual(events, [*said(*texts, handle=handle), Quit(handle)])
