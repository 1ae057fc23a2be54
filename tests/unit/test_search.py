"""The words of a search and whether a message has them: pure functions, with properties."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from chat.server import search
from chat.server.events import Delivery, Kind
from tests.unit.harness import Harness, HeldStore
from tests.unit.test_rooms import answers, said
from tests.unit.test_web_edge import logged_in


class WordsTests(unittest.TestCase):
    def test_words_are_folded_deduplicated_and_split_on_anything_else(self) -> None:
        self.assertEqual(search.words("Déploy, PROD; deploy_now!"), ("deploy", "prod", "now"))
        self.assertEqual(search.words("?!  --"), ())

    def test_a_message_matches_when_it_has_every_word_as_a_whole_word(self) -> None:
        self.assertTrue(search.matches("Le café est prêt", ("cafe", "pret")))
        self.assertFalse(search.matches("deployment done", ("deploy",)))
        self.assertFalse(search.matches("deploy", ("deploy", "prod")))

    def test_the_fts_query_quotes_every_word(self) -> None:
        self.assertEqual(search.fts_query(("deploy", 'a"b')), '"deploy" "a""b"')

    @given(st.text(max_size=80))
    def test_a_text_always_has_its_own_words(self, text: str) -> None:
        self.assertTrue(search.matches(text, search.words(text)))

    @given(st.text(max_size=40), st.text(max_size=40))
    def test_folding_twice_changes_nothing(self, a: str, b: str) -> None:
        self.assertEqual(search.words(search.fold(a + " " + b)), search.words(a + " " + b))


class NewestMatchingTests(unittest.TestCase):
    def kept(self, *texts: str) -> list[tuple[int, Delivery, str]]:
        return [
            (seq, Delivery("columbia", text, Kind.PRIVATE, float(seq), f"m{seq}", ("seas",)), "@c\ts")
            for seq, text in enumerate(texts)
        ]

    def test_newest_first_a_page_at_a_time(self) -> None:
        kept = self.kept("deploy a", "other", "deploy b", "deploy c")
        found = search.newest_matching(kept, ("deploy",), 2, None)
        assert found is not None
        self.assertEqual(([d.text for d, _ in found[0]], found[1]), (["deploy c", "deploy b"], True))
        older = search.newest_matching(kept, ("deploy",), 2, found[0][-1][0].id)
        assert older is not None
        self.assertEqual(([d.text for d, _ in older[0]], older[1]), (["deploy a"], False))
        self.assertIsNone(search.newest_matching(kept, ("deploy",), 2, "gone"))

    def test_rows_already_newest_first_are_read_only_as_far_as_the_page_needs(self) -> None:
        read: list[int] = []

        def rows() -> Iterator[tuple[int, Delivery, str]]:
            for item in reversed(self.kept(*[f"deploy {i}" for i in range(100)])):
                read.append(item[0])
                yield item

        found = search.newest_matching(rows(), ("deploy",), 3, None, newest_first=True)
        assert found is not None
        self.assertEqual([d.text for d, _ in found[0]], ["deploy 99", "deploy 98", "deploy 97"])
        self.assertIs(found[1], True)
        self.assertEqual(len(read), 4)


class SessionSearchTests(unittest.TestCase):
    """Search over TCP and JSON on one server, in process, with what each user may see."""

    def setUp(self) -> None:
        self.server = Harness()
        self.columbia = self.server.login("columbia")
        self.seas = self.server.login("seas")
        self.google = self.server.login("google")
        said(self.columbia, "join #ops")
        said(self.columbia, "message seas deploy tonight?")
        said(self.seas, "message google our deploy secret")
        said(self.google, "broadcast message Déploy done")
        said(self.columbia, "message #ops deploy rollback")

    def test_a_terminal_finds_what_its_user_may_see_newest_first(self) -> None:
        shown = said(self.columbia, "search DEPLOY")
        self.assertTrue(shown.startswith("Found 3 messages with 'deploy', newest first:\r\n"), shown)
        lines = shown.splitlines()[1:]
        self.assertEqual(
            [line.split(": ", 1)[0] for line in lines], ["  in #ops", "  in everyone", "  in seas"]
        )
        self.assertIn("columbia (#ops): deploy rollback", lines[0])
        self.assertNotIn("secret", shown)

    def test_nothing_found_and_a_search_without_words_are_one_line_each(self) -> None:
        self.assertEqual(said(self.columbia, "search kubernetes"), "No messages with 'kubernetes'.\r\n")
        self.assertIn("Usage: search WORDS", said(self.columbia, "search"))

    def test_a_browser_gets_hits_with_their_conversation_and_pages(self) -> None:
        self.seas.send("logout")
        browser = logged_in(self.server, "seas")
        [found] = answers(browser, type="search", text="deploy", count=2)
        self.assertEqual(found["type"], "found")
        self.assertEqual(
            [(h["conversation"], h["text"]) for h in found["hits"]],
            [("everyone", "Déploy done"), ("@google", "our deploy secret")],
        )
        self.assertIs(found["more"], True)
        [older] = answers(browser, type="search", text="deploy", count=2, before=found["hits"][-1]["id"])
        self.assertEqual(
            [(h["conversation"], h["text"]) for h in older["hits"]], [("@columbia", "deploy tonight?")]
        )
        self.assertIs(older["more"], False)


class SearchUnderLoadTests(unittest.TestCase):
    """An attacker's view: searches cannot pile up on the store or leak what the store failed on."""

    def test_searches_typed_as_fast_as_possible_go_to_the_store_one_at_a_time(self) -> None:
        store = HeldStore()
        server = Harness(store=store)
        columbia = server.login("columbia")
        columbia.send(*(["search deploy"] * 50))
        self.assertEqual(len(store.waiting), 1, "input is held while a search waits for the store")
        for _ in range(50):
            store.release()
        shown = columbia.read()
        self.assertEqual(shown.count("No messages with 'deploy'."), 20, shown[-300:])
        self.assertIn("Slow down", shown)

    def test_a_search_the_store_cannot_answer_says_so_in_one_line_and_the_session_goes_on(self) -> None:
        store = HeldStore()
        server = Harness(store=store)
        browser = logged_in(server, "columbia")
        store.release()  # what the login asked of the store
        browser.read()
        store.broken = True
        browser.send(type="search", text="deploy")
        browser.send(type="whoelse")
        store.release()
        answers = [(m["type"], m.get("code")) for m in browser.read()]
        self.assertEqual(answers, [("error", "history_unavailable"), ("roster", None)])
        # Logged once, as the store's failure, for the operator; the user got one line.
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
