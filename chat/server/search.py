"""
What a search looks for, and whether a message has it: pure functions that
every store shares, so that SQLite's full-text index and the scans of the
other stores find the same messages.

A search is words: a message matches when it has every one of them, in any
order, as whole words, whatever their case and accents (C{Déploy} is
C{deploy}).  Words are runs of letters and digits; everything else
separates them, as in SQLite's C{unicode61} tokenizer with
C{remove_diacritics 2}, which the SQLite store's index uses.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from chat.server.events import Delivery

#: At most this many words in one search: each costs the index a lookup.
MAX_WORDS = 8

_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """C{text} without case or accents: what two words are compared as."""
    # Decomposed before and after case folding: a compatibility character
    # may decompose to a capital (U+2115 to N), and folding may make one
    # that decomposes.
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> tuple[str, ...]:
    """The distinct words of C{text}, folded, in the order first typed."""
    return tuple(dict.fromkeys(_WORD.findall(fold(text))))


def matches(text: str, wanted: Iterable[str]) -> bool:
    """Whether C{text} has every one of the folded words C{wanted}."""
    have = set(_WORD.findall(fold(text)))
    return all(word in have for word in wanted)


def fts_query(wanted: Sequence[str]) -> str:
    """
    An FTS5 query for messages with every word of C{wanted}: each a quoted
    string, so that nothing in it is read as FTS5's own syntax.
    """
    return " ".join('"' + word.replace('"', '""') + '"' for word in wanted)


def newest_matching(
    kept: Iterable[tuple[int, Delivery, str]],
    wanted: Sequence[str],
    count: int,
    before: str | None,
    newest_first: bool = False,
) -> tuple[list[tuple[Delivery, str]], bool] | None:
    """
    The newest C{count} of C{kept} (sequence number, message, conversation)
    that have the words C{wanted} and are older than the message with id
    C{before}, newest first, each message once; and whether there are
    more.  None if C{before} is no longer kept.  For the stores that scan.
    C{kept} already C{newest_first} (a query's rows) is read only as far as
    the page needs.
    """
    if newest_first and before is None:
        return _first_matching(kept, wanted, count)
    ordered = sorted(kept, key=lambda item: item[0], reverse=True)
    if before is not None:
        at = next((i for i, (_, d, _) in enumerate(ordered) if d.id == before), None)
        if at is None:
            return None
        ordered = [item for item in ordered[at:] if item[1].id != before]
    return _first_matching(ordered, wanted, count)


def _first_matching(
    ordered: Iterable[tuple[int, Delivery, str]], wanted: Sequence[str], count: int
) -> tuple[list[tuple[Delivery, str]], bool]:
    found: list[tuple[Delivery, str]] = []
    seen: set[str] = set()
    for _, delivery, key in ordered:
        if (delivery.id and delivery.id in seen) or not matches(delivery.text, wanted):
            continue
        if len(found) == count:
            return found, True
        seen.add(delivery.id)
        found.append((delivery, key))
    return found, False
