"""
What text a user may send, decided in one place for every edge.

Text others will see (a message, an intro, a name) must not be able to
forge what they see: no characters that move text to a new line (line and
paragraph separators, long runs of spaces that wrap a terminal), that reorder
it (direction controls), that hide inside it (zero-width and other invisible
format characters, tag characters, interlinear annotations) or that pile up
on one letter until they cover the lines around it.  Such text is refused
whole, with the reason, rather than cleaned: the sender learns what was
wrong, and nobody sees a message that is not what was sent.

What stays: every script, with the joiners and marks it needs (a zero-width
joiner between two letters of Devanagari or two emoji of a family; up to
L{MAX_MARKS} combining marks on a letter, as Vietnamese uses two), emoji
sequences (skin tones, variation selectors, the tag sequences of subdivision
flags), and a tab.

The rules are pure functions, so they can be fuzzed on their own.
"""

from __future__ import annotations

import re
import unicodedata

from chat.server.events import Fault

#: Combining marks allowed in a row on one letter.
MAX_MARKS = 4
#: Lines in one message (a message may hold line breaks on the JSON
#: protocol: a pasted snippet or list).
MAX_LINES = 50
#: Spaces (or tabs) allowed in a row: past that a terminal may wrap what
#: follows onto a line of its own, where it would pass for another message.
MAX_SPACES = 16

#: C0 controls except tab, DEL, and C1 controls.
CONTROL = "\x00-\x08\x0a-\x1f\x7f-\x9f"
#: Characters that reorder the text around them (the Unicode bidirectional
#: embeddings, overrides and isolates, and the implicit direction marks).
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
LINE_SEPARATORS = "\u2028\u2029"
#: Characters that show nothing, always refused: the soft hyphen, the
#: Mongolian vowel separator, zero-width space, word joiner and the
#: invisible operators, the byte order mark, the Hangul fillers (a "name"
#: of one of them looks blank), the combining grapheme joiner, and the
#: interlinear annotation characters.
INVISIBLE = (
    "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180e\u200b\u2060-\u2064\u3164\ufeff\uffa0\ufff9-\ufffb"
)
#: Zero-width joiner and non-joiner: needed inside words of some scripts and
#: in emoji sequences, so allowed only between two such characters.
JOINERS = "\u200c\u200d"
#: Tag characters: allowed only in the tag sequence of a flag (U+1F3F4,
#: tags, then U+E007F, the cancel tag).
TAGS = "\U000e0000-\U000e007f"
BLACK_FLAG = "\U0001f3f4"
CANCEL_TAG = "\U000e007f"

#: A run of spaces between two pieces of text: one at either end is
#: trimmed (and a line of spaces alone is a blank line), but one in the
#: middle can push what follows to a line of its own.
_SPACE_RUN = f"(?<=\\S)[ \\t]{{{MAX_SPACES + 1},}}(?=\\S)"
_CONTROL_ASCII = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_SPACES = re.compile(_SPACE_RUN)
#: A run as long as a refused one, found by C{in}: only then is the
#: (slower) pattern of a run between two pieces of text tried.
_LONG_RUN = " " * (MAX_SPACES + 1)
_REFUSED = re.compile(
    f"(?P<control>[{CONTROL}])|(?P<bidi>[{BIDI_CONTROLS}])|(?P<lines>[{LINE_SEPARATORS}])"
    f"|(?P<invisible>[{INVISIBLE}])|(?P<spaces>{_SPACE_RUN})"
)
_CONTEXTUAL = re.compile(f"[{JOINERS}{TAGS}]")

_FAULTS = {
    "control": Fault.CONTROL_CHARACTERS,
    "bidi": Fault.DIRECTION_CONTROLS,
    "lines": Fault.LINE_SEPARATORS,
    "invisible": Fault.INVISIBLE_CHARACTERS,
    "spaces": Fault.SPACE_RUN,
}


def refused_line(text: str) -> Fault | None:
    """
    Why a line may not be used at all, whatever it is for (a password
    included): text that is not text, or that controls a terminal.
    """
    if text.isascii():
        return Fault.CONTROL_CHARACTERS if re.search(f"[{CONTROL}]", text) else None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate, from a JSON escape: it could never be shown.
        return Fault.NOT_UTF8
    if re.search(f"[{CONTROL}]", text):
        return Fault.CONTROL_CHARACTERS
    return None


def refused(text: str) -> Fault | None:
    """Why C{text}, to be shown to others, is refused; None if it is fine."""
    if text.isascii():
        # The hot path: most lines, checked with one simple character class
        # and, unless the line holds a long run of spaces or a tab, nothing else.
        if _CONTROL_ASCII.search(text) is not None:
            return Fault.CONTROL_CHARACTERS
        if (_LONG_RUN in text or "\t" in text) and _SPACES.search(text) is not None:
            return Fault.SPACE_RUN
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return Fault.NOT_UTF8
    m = _REFUSED.search(text)
    if m is not None:
        assert m.lastgroup is not None
        return _FAULTS[m.lastgroup]
    for m in _CONTEXTUAL.finditer(text):
        if not _in_context(text, m.start()):
            return Fault.INVISIBLE_CHARACTERS
    if _too_many_marks(text):
        return Fault.STACKED_MARKS
    return None


def refused_message(text: str) -> Fault | None:
    """
    Why the text of a message, which may hold line breaks (the JSON
    protocol's; a terminal sends one line), is refused: more than
    L{MAX_LINES} lines, or a line that L{refused} refuses.
    """
    if "\n" not in text:
        return refused(text)
    lines = text.split("\n")
    if len(lines) > MAX_LINES:
        return Fault.TOO_MANY_LINES
    for line in lines:
        fault = refused(line)
        if fault is not None:
            return fault
    return None


def _in_context(text: str, at: int) -> bool:
    """Whether the joiner or tag character at C{at} is where a script or an emoji needs it."""
    char = text[at]
    if char in JOINERS:
        if at == 0 or at == len(text) - 1:
            return False
        return _joinable(text[at - 1]) and _joinable(text[at + 1])
    # A tag: part of a run that follows a black flag and ends with the cancel tag.
    start = at
    while start > 0 and _is_tag(text[start - 1]):
        start -= 1
    end = at
    while end < len(text) - 1 and _is_tag(text[end + 1]):
        end += 1
    return start > 0 and text[start - 1] == BLACK_FLAG and text[end] == CANCEL_TAG and end - start < 16


def _is_tag(char: str) -> bool:
    return "\U000e0000" <= char <= "\U000e007f"


def _joinable(char: str) -> bool:
    """A character a joiner may stand next to: a letter, mark or symbol of a script beyond ASCII."""
    if char.isascii() or char in JOINERS:
        return False
    return unicodedata.category(char)[0] in "LMS"


def _too_many_marks(text: str) -> bool:
    run = 0
    for char in text:
        # Nonspacing and enclosing marks stack; spacing ones (an Indic vowel
        # sign) take their own room, and do not count.
        if char >= "\u0300" and unicodedata.category(char) in ("Mn", "Me"):
            run += 1
            if run > MAX_MARKS:
                return True
        else:
            run = 0
    return False
