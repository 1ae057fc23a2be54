"""How a cluster writes values in Redis (L{chat.server.backends.redis.keys})."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from chat.server.backends.redis import keys
from chat.server.events import Delivery, Kind

deliveries = st.builds(
    Delivery,
    sender=st.text(),
    text=st.text(),
    kind=st.sampled_from(Kind),
    sent_at=st.floats(allow_nan=False, allow_infinity=False),
    id=st.text(),
    to=st.lists(st.text(), max_size=4).map(tuple),
    room=st.text(max_size=8),
)


class DeliveryEncodingTests(unittest.TestCase):
    @given(deliveries)
    def test_a_delivery_is_written_as_the_json_encoder_writes_its_value(self, d: Delivery) -> None:
        expected = json.dumps(keys.delivery_value(d), ensure_ascii=False, separators=(",", ":"))
        self.assertEqual(keys.encode_delivery(d), expected)

    @given(deliveries)
    def test_a_delivery_reads_back_the_same(self, d: Delivery) -> None:
        self.assertEqual(keys.decode_delivery(keys.encode_delivery(d)), d)

    def test_text_other_than_ascii_is_kept_and_quotes_escaped(self) -> None:
        d = Delivery('a"b', "snow ☃\n\x00", Kind.PRIVATE, 1.5, "x-1", ("c\\d",))
        self.assertEqual(
            keys.encode_delivery(d),
            '{"id":"x-1","from":"a\\"b","kind":"private","text":"snow ☃\\n\\u0000","at":1.5,"to":["c\\\\d"]}',
        )

    def test_a_delivery_of_an_unknown_kind_is_refused(self) -> None:
        written = keys.encode_delivery(Delivery("a", "b", Kind.PRIVATE, 1.0, "x-1", ("c",)))
        text = written.replace("private", "nope")
        self.assertRaises(ValueError, keys.decode_delivery, text)
