"""
The store of a cluster: everything durable in one Redis, shared by every
node, so a user finds their offline messages, history and resume tokens
whichever node they reach.

Redis answers commands on one connection in the order they were sent, and
every command here goes over the node's one L{RedisLink}: a message saved
just before the recipient asks for their messages is in the answer.  So
nothing here waits for one reply before sending a command that must come
after it, scripts included (L{chat.server.backends.redis.link.Script}).

What must be atomic (a history batch, taking a resume token, a message for
several recipients) is a Lua script.  Times come from the caller, never
from Redis, so nodes agree with the tests and with each other about what
has expired even when Redis's clock does not.

Floats are written as C{repr} text, which reads back as the same float
(C{"%f"} would keep six decimals and lose the rest).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, FirstError, gatherResults, succeed
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from zope.interface import implementer

from chat.server import conversations, search
from chat.server.backends.redis import keys as rediskeys
from chat.server.backends.redis import schema
from chat.server.backends.redis.link import RedisLink
from chat.server.batching import TurnCalls
from chat.server.events import Delivery, StoredMessage
from chat.server.health import Health
from chat.server.interfaces import ConversationState, IStore, Room, Snapshot, StoreError

T = TypeVar("T")

#: How long Redis keeps a resume token past its expiry, in seconds: the
#: decision is made with the caller's clock, so a Redis clock running ahead
#: of the nodes' must not drop a token they still take for valid.
TOKEN_MARGIN = 3600

#: How long C{WAITAOF} may wait for the local fsync, in milliseconds.
WAITAOF_TIMEOUT = 1000

#: How many conversations a node remembers having written the members of.
KNOWN_CONVERSATIONS = 100_000
#: Deliveries whose JSON is kept for their history entries (L{RedisStore._encoded}).
ENCODED_KEPT = 10_000

_HAND_OVER = """
-- KEYS: the inbox of each entry.  ARGV[1]: '1' to publish here, else the
-- messages are returned (channel, message, ...) for the caller to publish
-- once they are durable; then, for each entry, the encoded delivery, the
-- recipient, and the channel of their node ('' if they are offline).
-- Each node's channel gets one message for all of its entries: each with
-- its stream id, so that node shows it without reading the inbox and can
-- remove it once shown; "inbox" names the users, for a node that reads
-- their inboxes instead.
local parts, names, order = {}, {}, {}
for i, inbox in ipairs(KEYS) do
  local at = 2 + (i - 1) * 3
  local d, name, channel = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local id = redis.call('XADD', inbox, '*', 'd', d)
  if channel ~= '' then
    if not parts[channel] then
      parts[channel], names[channel] = {}, {}
      order[#order + 1] = channel
    end
    local quoted = cjson.encode(name)
    local list = parts[channel]
    list[#list + 1] = '[' .. quoted .. ',"' .. id .. '",' .. d .. ']'
    names[channel][quoted] = true
  end
end
local out = {}
for _, channel in ipairs(order) do
  local listed = {}
  for quoted in pairs(names[channel]) do listed[#listed + 1] = quoted end
  local message = '{"m":[' .. table.concat(parts[channel], ',') .. '],"inbox":[' ..
                  table.concat(listed, ',') .. ']}'
  if ARGV[1] == '1' then
    redis.call('PUBLISH', channel, message)
  else
    out[#out + 1] = channel
    out[#out + 1] = message
  end
end
return out
"""

_ACK = """
-- KEYS: inboxes; ARGV: for each, how many entries to remove, then their ids.
local at = 1
for _, inbox in ipairs(KEYS) do
  local count = tonumber(ARGV[at])
  for first = at + 1, at + count, 1000 do
    redis.call('XDEL', inbox, unpack(ARGV, first, math.min(first + 999, at + count)))
  end
  at = at + count + 1
end
return 1
"""

_SAVE_HISTORY = """
-- KEYS[1]: the sequence counter; KEYS[2..]: the list of each entry's
-- conversation.  ARGV[1]: the limit per conversation; ARGV[2..]: each
-- entry's encoded delivery.
local limit = tonumber(ARGV[1])
local entries = #ARGV - 1
local seq = redis.call('INCRBY', KEYS[1], entries) - entries
local touched, order = {}, {}
for i = 1, entries do
  local key = KEYS[i + 1]
  redis.call('LPUSH', key, '{"seq":' .. (seq + i) .. ',"d":' .. ARGV[i + 1] .. '}')
  if not touched[key] then
    touched[key] = true
    order[#order + 1] = key
  end
end
for _, key in ipairs(order) do
  redis.call('LTRIM', key, 0, limit - 1)
end
return seq + entries
"""

_READ_HISTORY = """
-- KEYS[1]: the set of the user's conversations; KEYS[2]: everyone's list.
-- ARGV[1]: how many of each, newest first; ARGV[2]: the prefix of a
-- conversation's list.  One script, so all are read at the same instant.
local last = tonumber(ARGV[1]) - 1
local lists = {redis.call('LRANGE', KEYS[2], 0, last)}
for _, conversation in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  lists[#lists + 1] = redis.call('LRANGE', ARGV[2] .. conversation, 0, last)
end
return lists
"""

_SEARCHED_LISTS = """
-- KEYS[1]: the set of the user's conversations; KEYS[2]: everyone's list.
-- ARGV[1]: the prefix of a conversation's list.  Each conversation's key
-- and its whole list (bounded by --history), at one instant.
local found = {'', redis.call('LRANGE', KEYS[2], 0, -1)}
for _, conversation in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  found[#found + 1] = conversation
  found[#found + 1] = redis.call('LRANGE', ARGV[1] .. conversation, 0, -1)
end
return found
"""

_CONVERSATION_PAGE = """
-- KEYS[1]: a conversation's list (newest first).  ARGV[1]: how many;
-- ARGV[2]: the id of the message the page ends before, or ''.  Gives the
-- page (newest first) and whether older entries are kept, or nothing if
-- that message is no longer kept.
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
local start = 1
if ARGV[2] ~= '' then
  start = nil
  for i, value in ipairs(entries) do
    if cjson.decode(value)['d']['id'] == ARGV[2] then
      start = i + 1
      break
    end
  end
  if not start then return {{}, 0} end
end
local count = tonumber(ARGV[1])
local page = {}
for i = start, math.min(#entries, start + count - 1) do
  page[#page + 1] = entries[i]
end
local more = 0
if start + count - 1 < #entries then more = 1 end
return {page, more}
"""

_CONVERSATIONS_OF = """
-- KEYS[1]: the user's conversations (a set); KEYS[2]: their read markers;
-- KEYS[3]: everyone's list.  ARGV[1]: the user; ARGV[2]: the time unread
-- counts start from where there is no marker; ARGV[3]: a conversation's
-- list's prefix.  Gives key, newest time and unread count of each.
local out = {}
local function count(key, list)
  local marker = redis.call('HGET', KEYS[2], key)
  marker = tonumber(marker or ARGV[2])
  local last, unread = '0', 0
  for i, value in ipairs(redis.call('LRANGE', list, 0, -1)) do
    local d = cjson.decode(value)['d']
    if i == 1 then last = tostring(d['at']) end
    if tonumber(d['at']) > marker and d['from'] ~= ARGV[1] then unread = unread + 1 end
  end
  out[#out + 1] = key
  out[#out + 1] = last
  out[#out + 1] = unread
end
count('', KEYS[3])
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  count(key, ARGV[3] .. key)
end
return out
"""

_MARK_READ = """
-- KEYS[1]: the user's read markers; ARGV: conversation and time, in pairs.
-- A marker never moves back.
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if not current or tonumber(current) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""

_LOAD_ROOMS = """
-- KEYS[1]: the rooms; ARGV[1]: a room's members' prefix.  Gives each
-- room's key, name and members.
local out = {}
local rooms = redis.call('HGETALL', KEYS[1])
for i = 1, #rooms, 2 do
  out[#out + 1] = {rooms[i], rooms[i + 1], redis.call('SMEMBERS', ARGV[1] .. rooms[i])}
end
return out
"""

_SAVE_TOKEN = """
-- KEYS[1]: the new token's hash; KEYS[2]: the set of the user's digests.
-- ARGV: the token key prefix, the name, the digest, expires, now, and how
-- many seconds Redis should keep the keys.
local now = tonumber(ARGV[5])
for _, digest in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = ARGV[1] .. digest
  local token = redis.call('HMGET', key, 'expires', 'used')
  -- Revoke the unused ones; keep a used one until it expires, so that
  -- using it again is told from using an expired one.
  if not token[1] or tonumber(token[1]) <= now or token[2] ~= '1' then
    redis.call('DEL', key)
    redis.call('SREM', KEYS[2], digest)
  end
end
local keep = tonumber(ARGV[6])
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'expires', ARGV[4], 'used', '0')
redis.call('EXPIRE', KEYS[1], keep)
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('TTL', KEYS[2]) < keep then
  redis.call('EXPIRE', KEYS[2], keep)
end
return 1
"""

_USE_TOKEN = """
-- KEYS[1]: the token's hash; ARGV[1]: now.
local token = redis.call('HMGET', KEYS[1], 'name', 'expires', 'used')
if not token[1] or tonumber(token[2]) <= tonumber(ARGV[1]) then
  return {'expired'}
end
if token[3] == '1' then
  return {'reused', token[1]}
end
redis.call('HSET', KEYS[1], 'used', '1')
return {'ok', token[1]}
"""

_REVOKE_TOKENS = """
-- KEYS[1]: the set of the user's digests; ARGV[1]: the token key prefix.
for _, digest in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  redis.call('DEL', ARGV[1] .. digest)
end
redis.call('DEL', KEYS[1])
return 1
"""


def _all(ds: Sequence[Deferred[Any]]) -> Deferred[list[Any]]:
    """Wait for commands sent together; the first failure is the failure."""

    def first(f: Failure) -> Failure:
        error = f.value
        return error.subFailure if isinstance(error, FirstError) else f

    return gatherResults(list(ds), consumeErrors=True).addErrback(first)


def _none(_: object) -> None:
    return None


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    """A hash as C{HGETALL} gives it: keys and values in one flat list."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


@implementer(IStore)
class RedisStore:
    """
    The store in Redis, over the cluster's link (L{RedisLink}).

    It owns nothing but its scripts: the link belongs to the cluster, which
    starts and stops it.  While Redis is away every call fails at once with
    L{Unavailable} rather than waiting for it to come back, and L{health}
    (the health of the node's connections to Redis together) says when it
    is.
    """

    #: Follow each write the caller is told is durable with C{WAITAOF}, so it
    #: fires only once Redis has it in its append-only file: for Redis
    #: 7.2 and later with C{appendfsync everysec}.  With C{appendfsync
    #: always} a reply already means on disk.
    waitaof: bool = False

    def __init__(self, link: RedisLink, history: int = 200) -> None:
        self._link = link
        self._history_limit = history
        self._snapshot = Snapshot({}, {})
        self._hand_over = link.script(_HAND_OVER)
        self._remove = link.script(_ACK)
        #: This turn's inbox writes and removals, each sent as one script.
        self._handing: TurnCalls[tuple[Sequence[tuple[str, str]], Delivery]] = TurnCalls(
            link.clock, self._hand_over_all
        )
        self._acking: TurnCalls[Sequence[StoredMessage]] = TurnCalls(link.clock, self._ack_all)
        self._save_history = link.script(_SAVE_HISTORY)
        #: Conversations whose members' sets this node has written, since
        #: it last connected (Redis may have lost them) and up to a bound.
        self._known: set[str] = set()
        #: Deliveries handed over, by id, with their JSON: their history
        #: entries (written a moment later) use it rather than encoding
        #: them again.  Emptied by each history write; at most
        #: L{ENCODED_KEPT}.
        self._encoded: dict[str, tuple[Delivery, str]] = {}
        link.on_connect(self._known.clear)
        self._read_history = link.script(_READ_HISTORY)
        self._conversation_page = link.script(_CONVERSATION_PAGE)
        self._searched_lists = link.script(_SEARCHED_LISTS)
        self._conversations_of = link.script(_CONVERSATIONS_OF)
        self._mark_read = link.script(_MARK_READ)
        self._load_rooms = link.script(_LOAD_ROOMS)
        self._save_token = link.script(_SAVE_TOKEN)
        self._use_token = link.script(_USE_TOKEN)
        self._revoke_tokens = link.script(_REVOKE_TOKENS)

    @property
    def health(self) -> Health:
        return self._link.group.health

    def load(self) -> Deferred[Snapshot]:
        """
        Read what the service needs in memory at startup, for C{snapshot}:
        Redis is asked, unlike SQLite whose store opens synchronously.
        """
        upgraded = schema.upgrade(self._link, self._history_limit)
        seen = self._link.execute("HGETALL", rediskeys.LAST_SEEN)
        intros = self._link.execute("HGETALL", rediskeys.INTROS)
        rooms = self._load_rooms([rediskeys.ROOMS], [rediskeys.ROOM_MEMBERS])

        def loaded(replies: list[Any]) -> Snapshot:
            _, seen, intros, rooms = replies
            self._snapshot = Snapshot(
                {name: float(when) for name, when in _pairs(seen).items()},
                _pairs(intros),
                {key: Room(name, frozenset(members)) for key, name, members in rooms},
            )
            return self._snapshot

        return _all([upgraded, seen, intros, rooms]).addCallback(loaded)

    def snapshot(self) -> Snapshot:
        """What C{load} read (empty before it): not kept up to date after."""
        return self._snapshot

    def _durable(self, d: Deferred[T]) -> Deferred[T]:
        """
        C{d}, made to wait for C{WAITAOF} if asked: sent at once behind the
        write on the same connection, so it waits for that write.
        """
        if not self.waitaof:
            return d
        wait = self._link.execute("WAITAOF", 1, 0, WAITAOF_TIMEOUT)

        def check(reply: list[int]) -> None:
            if int(reply[0]) < 1:
                raise StoreError(f"Redis did not write to its AOF within {WAITAOF_TIMEOUT} ms")

        def written(result: T) -> Deferred[T]:
            return wait.addCallback(check).addCallback(lambda _: result)

        def failed(f: Failure) -> Failure:
            wait.addErrback(lambda _: None)
            return f

        return d.addCallbacks(written, failed)

    # --- offline messages --------------------------------------------------------

    @property
    def link(self) -> RedisLink:
        """The connection the store's commands go over, in order."""
        return self._link

    def save_offline(self, recipients: Sequence[str], delivery: Delivery) -> Deferred[None]:
        return self.hand_over([(name, "") for name in recipients], delivery)

    def hand_over(self, routes: Sequence[tuple[str, str]], delivery: Delivery) -> Deferred[None]:
        """
        Put C{delivery} in the inbox of each recipient, and pass it to
        their node: C{routes} are (recipient, the channel of the node they
        are online on, or "" if none).  Fires once it is durable; the
        messages of one turn go as one script (L{TurnCalls}).
        """
        if not routes:
            return succeed(None)
        return self._handing.add((routes, delivery))

    def _hand_over_all(self, items: list[tuple[Sequence[tuple[str, str]], Delivery]]) -> Deferred[None]:
        keys: list[str] = []
        args: list[Any] = ["0" if self.waitaof else "1"]
        encodings = self._encoded if self._history_limit else None
        if encodings is not None and len(encodings) >= ENCODED_KEPT:
            encodings.clear()
        for routes, delivery in items:
            encoded = rediskeys.encode_delivery(delivery)
            if encodings is not None:
                encodings[delivery.id] = (delivery, encoded)
            for name, channel in routes:
                keys.append(rediskeys.inbox(name))
                args += (encoded, name, channel)
        saved = self._durable(self._hand_over(keys, args))
        # With WAITAOF the nodes are told only once the messages are durable.
        return saved.addCallback(self._publish)

    def _publish(self, messages: list[str]) -> None:
        for channel, message in zip(messages[::2], messages[1::2], strict=True):
            # At most once, as pub/sub is: a node that misses it shows the
            # messages when it next reads the inbox (a reconnect, a login).
            self._link.execute("PUBLISH", channel, message).addErrback(_none)

    def offline_for(self, name: str) -> Deferred[list[StoredMessage]]:
        def read(entries: list[list[Any]]) -> list[StoredMessage]:
            return [
                StoredMessage(entry_id, name, rediskeys.decode_delivery(_pairs(fields)["d"]))
                for entry_id, fields in entries
            ]

        # This turn's writes and removals first: the read must see them.
        self._handing.send()
        self._acking.send()
        return self._link.execute("XRANGE", rediskeys.inbox(name), "-", "+").addCallback(read)

    def ack(self, messages: Sequence[StoredMessage]) -> Deferred[None]:
        if not messages:
            return succeed(None)
        return self._acking.add(messages)

    def _ack_all(self, batches: list[Sequence[StoredMessage]]) -> Deferred[None]:
        # An emptied stream stays, empty: other nodes may be reading it.
        ids: dict[str, list[str]] = {}
        for messages in batches:
            for m in messages:
                ids.setdefault(m.recipient, []).append(str(m.id))
        keys = [rediskeys.inbox(name) for name in ids]
        args: list[Any] = []
        for some in ids.values():
            args.append(len(some))
            args += some
        return self._remove(keys, args).addCallback(_none)

    # --- profiles ------------------------------------------------------------------

    def set_intro(self, name: str, text: str) -> Deferred[None]:
        return self._durable(self._link.execute("HSET", rediskeys.INTROS, name, text)).addCallback(_none)

    def mark_seen(self, seen: Mapping[str, float]) -> Deferred[None]:
        if not seen:
            return succeed(None)
        fields = [value for name, when in seen.items() for value in (name, repr(float(when)))]
        return self._link.execute("HSET", rediskeys.LAST_SEEN, *fields).addCallback(_none)

    # --- history ---------------------------------------------------------------------

    def save_history(self, entries: Sequence[tuple[Delivery, str]]) -> Deferred[None]:
        if not self._history_limit or not entries:
            return succeed(None)
        keys = [rediskeys.HISTORY_SEQ]
        args: list[Any] = [self._history_limit]
        encodings, self._encoded = self._encoded, {}
        for delivery, key in entries:
            keys.append(rediskeys.history(key))
            known = encodings.get(delivery.id)
            # (The same message, not one made from it: a message that
            # reached only some keeps its id with fewer recipients.)
            args.append(
                known[1]
                if known is not None and known[0] is delivery
                else rediskeys.encode_delivery(delivery)
            )
            if key not in self._known:
                if len(self._known) >= KNOWN_CONVERSATIONS:
                    self._known.clear()
                # Each user's set of conversations: once per new one (by
                # this node; SADD again is harmless), sent before the
                # history on the same connection.
                self._known.add(key)
                for name in conversations.members(key):
                    self._link.execute("SADD", rediskeys.conversations_of(name), key).addErrback(
                        self._not_known, key
                    )
        return self._save_history(keys, args).addCallback(_none)

    def _not_known(self, f: Failure, key: str) -> None:
        self._known.discard(key)

    def history_for(self, name: str, count: int) -> Deferred[list[Delivery]]:
        count = min(count, self._history_limit)
        if count <= 0:
            return succeed([])

        def merge(lists: list[list[str]]) -> list[Delivery]:
            values = [json.loads(text) for kept in lists for text in kept]
            kept = [(int(v["seq"]), rediskeys.delivery_from_value(v["d"])) for v in values]
            return conversations.newest(kept, count)

        keys = [rediskeys.conversations_of(name), rediskeys.history(conversations.EVERYONE)]
        return self._read_history(keys, [count, rediskeys.HISTORY]).addCallback(merge)

    def conversation_history(
        self, key: str, count: int, before: str | None = None
    ) -> Deferred[tuple[list[Delivery], bool]]:
        if count <= 0:
            return succeed(([], False))

        def page(reply: list[Any]) -> tuple[list[Delivery], bool]:
            entries, more = reply
            found = [rediskeys.delivery_from_value(json.loads(text)["d"]) for text in entries]
            found.reverse()
            return found, bool(int(more))

        keys = [rediskeys.history(key)]
        return self._conversation_page(keys, [count, before or ""]).addCallback(page)

    def search(
        self, name: str, words: Sequence[str], count: int, before: str | None = None
    ) -> Deferred[tuple[list[tuple[Delivery, str]], bool] | None]:
        """
        A scan of every message kept in the user's conversations (Redis has
        no full-text index here): at most C{--history} per conversation,
        read in one script and matched in a thread, off the reactor.
        """

        def scan(flat: list[Any]) -> tuple[list[tuple[Delivery, str]], bool] | None:
            kept = []
            for key, values in zip(flat[::2], flat[1::2], strict=True):
                for text in values:
                    value = json.loads(text)
                    kept.append((int(value["seq"]), rediskeys.delivery_from_value(value["d"]), str(key)))
            return search.newest_matching(kept, words, count, before)

        keys = [rediskeys.conversations_of(name), rediskeys.history(conversations.EVERYONE)]
        read = self._searched_lists(keys, [rediskeys.HISTORY])
        return read.addCallback(lambda flat: deferToThread(scan, flat))

    # --- rooms and read markers --------------------------------------------------------

    def save_room(self, key: str, name: str) -> Deferred[bool]:
        made = self._link.execute("HSETNX", rediskeys.ROOMS, key, name)
        return self._durable(made).addCallback(lambda created: bool(int(created)))

    def room_name(self, key: str) -> Deferred[str | None]:
        """The name the room C{key} was made with (on any node), or None if there is no such room."""
        kept = self._link.execute("HGET", rediskeys.ROOMS, key)
        return kept.addCallback(lambda name: None if name is None else str(name))

    def room_members(self, key: str) -> Deferred[frozenset[str]]:
        """Every member of the room C{key} (on any node), as Redis has them."""
        kept = self._link.execute("SMEMBERS", rediskeys.ROOM_MEMBERS + key)
        return kept.addCallback(lambda names: frozenset(str(n) for n in names))

    def join_room(self, key: str, user: str) -> Deferred[None]:
        self._link.execute("SADD", rediskeys.ROOM_MEMBERS + key, user)
        joined = self._link.execute("SADD", rediskeys.conversations_of(user), key)
        return self._durable(joined).addCallback(_none)

    def leave_room(self, key: str, user: str) -> Deferred[None]:
        self._link.execute("SREM", rediskeys.ROOM_MEMBERS + key, user)
        left = self._link.execute("SREM", rediskeys.conversations_of(user), key)
        return self._durable(left).addCallback(_none)

    def mark_read(self, name: str, marks: Mapping[str, float]) -> Deferred[None]:
        if not marks:
            return succeed(None)
        args = [value for key, at in marks.items() for value in (key, repr(float(at)))]
        return self._mark_read([rediskeys.READ + name], args).addCallback(_none)

    def conversations_of(self, name: str, since: float) -> Deferred[list[ConversationState]]:
        def states(flat: list[Any]) -> list[ConversationState]:
            found = []
            for i in range(0, len(flat), 3):
                key, last, unread = flat[i], float(flat[i + 1]), int(flat[i + 2])
                if last or conversations.is_room(key):
                    found.append(ConversationState(key, last, unread))
            return sorted(found, key=lambda state: state.key)

        keys = [
            rediskeys.conversations_of(name),
            rediskeys.READ + name,
            rediskeys.history(conversations.EVERYONE),
        ]
        args = [name, repr(float(since)), rediskeys.HISTORY]
        return self._conversations_of(keys, args).addCallback(states)

    # --- resume tokens -----------------------------------------------------------------

    def save_token(self, name: str, digest: str, expires: float, now: float) -> Deferred[None]:
        keep = max(0, math.ceil(expires - now)) + TOKEN_MARGIN
        keys = [rediskeys.TOKEN + digest, rediskeys.TOKENS_OF + name]
        args = [rediskeys.TOKEN, name, digest, repr(float(expires)), repr(float(now)), keep]
        return self._durable(self._save_token(keys, args)).addCallback(_none)

    def revoke_tokens(self, name: str) -> Deferred[None]:
        revoked = self._revoke_tokens([rediskeys.TOKENS_OF + name], [rediskeys.TOKEN])
        return self._durable(revoked).addCallback(_none)

    def use_token(self, digest: str, now: float) -> Deferred[tuple[str | None, str]]:
        def answer(reply: list[str]) -> tuple[str | None, str]:
            if reply[0] == "expired":
                return None, "expired"
            return reply[1], reply[0]

        used = self._use_token([rediskeys.TOKEN + digest], [repr(float(now))])
        return self._durable(used).addCallback(answer)

    def close(self) -> Deferred[None]:
        # What this turn gathered goes before the link is closed.
        self._handing.send()
        self._acking.send()
        return succeed(None)
