"""
The version of what a cluster keeps in Redis, and the steps from each
version to the next, as the SQLite store has for its file.

Version 1 kept history per user: a list of each user's messages, a
private message in both its users' lists.  Version 2 keeps it per
conversation (L{chat.server.conversations}), one entry per message, a
message to several users in the group's list.  Version 3 adds rooms and
read markers (new keys, nothing to move) and keeps a message to several
users in each recipient's conversation with its sender.  The first node of
the new version to start moves the old lists over; nodes that start while
it does so read the history they find (everyone's list, which did not
change, and the conversations moved so far).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chat.server import conversations
from chat.server.backends.redis import keys as rediskeys
from chat.server.backends.redis.link import RedisLink

log = Logger()

VERSION = 3

#: How long a node may take to move the data before another may try.
LOCK_SECONDS = 300

#: Version 1's lists of each user's history.
_OLD_HISTORY = rediskeys.PREFIX + "history:"

#: What separates the names in a conversation's key: a group's (version 2)
#: has more than two.
_SEPARATOR = "\t"

_MERGE = """
-- KEYS[1]: a conversation's list (newest first).  ARGV[1]: the limit;
-- ARGV[2..]: entries to add.  One script, so a node saving to the list
-- meanwhile loses nothing: the list is read, merged by sequence number
-- and written back at one instant.
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
for i = 2, #ARGV do entries[#entries + 1] = ARGV[i] end
local seqs = {}
for _, value in ipairs(entries) do seqs[value] = cjson.decode(value)['seq'] end
table.sort(entries, function(a, b) return seqs[a] > seqs[b] end)
redis.call('DEL', KEYS[1])
local limit = math.min(tonumber(ARGV[1]), #entries)
for i = 1, limit, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(entries, i, math.min(i + 999, limit)))
end
return limit
"""


def upgrade(link: RedisLink, limit: int) -> Deferred[None]:
    """Bring the data in Redis to L{VERSION}, unless another node is doing it."""
    return Deferred.fromCoroutine(_upgrade(link, limit))


async def _upgrade(link: RedisLink, limit: int) -> None:
    version = await link.execute("GET", rediskeys.SCHEMA)
    if version is not None and int(version) >= VERSION:
        return
    if not await link.execute("SET", rediskeys.SCHEMA_LOCK, "1", "NX", "EX", LOCK_SECONDS):
        return
    old = await _scan(link, _OLD_HISTORY + "*")
    if old:
        moved = await _history_by_conversation(link, old, limit)
        log.info(
            "moved the history of {users} users to {conversations} conversations",
            users=len(old),
            conversations=moved,
        )
    groups = [key for key in await _scan(link, rediskeys.history("@") + "*") if key.count(_SEPARATOR) > 1]
    if groups:
        pairs = await _groups_to_pairs(link, groups, limit)
        log.info(
            "moved the messages of {groups} group conversations to {pairs} direct ones",
            groups=len(groups),
            pairs=pairs,
        )
    await link.execute("SET", rediskeys.SCHEMA, VERSION)
    await link.execute("DEL", rediskeys.SCHEMA_LOCK)


async def _scan(link: RedisLink, pattern: str) -> list[str]:
    found: list[str] = []
    cursor = "0"
    while True:
        cursor, batch = await link.execute("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        found.extend(batch)
        if cursor == "0":
            return found


async def _history_by_conversation(link: RedisLink, old: list[str], limit: int) -> int:
    """
    Version 1 to 2: each entry of the users' lists once, in its
    conversation's list, in the order of its sequence number (which the
    copies of one message share).
    """
    entries: dict[int, str] = {}
    for key in old:
        for value in await link.execute("LRANGE", key, 0, -1):
            entries.setdefault(int(json.loads(value)["seq"]), value)
    by_conversation: dict[str, list[tuple[int, str]]] = {}
    for seq, value in entries.items():
        delivery = rediskeys.delivery_from_value(json.loads(value)["d"])
        for key in conversations.of(delivery):
            by_conversation.setdefault(key, []).append((seq, value))
    for key, kept in by_conversation.items():
        newest_first = [value for _, value in sorted(kept, reverse=True)][: max(limit, 1)]
        # After what nodes may have saved meanwhile: those are newer.
        commands: list[tuple[Any, ...]] = [
            ("RPUSH", rediskeys.history(key), *newest_first),
            ("LTRIM", rediskeys.history(key), 0, max(limit, 1) - 1),
        ]
        commands.extend(
            ("SADD", rediskeys.conversations_of(name), key) for name in conversations.members(key)
        )
        for command in commands:
            await link.execute(*command)
    await link.execute("DEL", *old)
    return len(by_conversation)


async def _groups_to_pairs(link: RedisLink, groups: list[str], limit: int) -> int:
    """
    Version 2 to 3: each entry of a group's list (a message to several
    users) into each recipient's conversation with its sender, merged by
    sequence number with what that conversation has; then the group's list
    goes, from its members' sets of conversations too.
    """
    prefix = len(rediskeys.HISTORY)
    by_pair: dict[str, list[str]] = {}
    for list_key in groups:
        for value in await link.execute("LRANGE", list_key, 0, -1):
            delivery = rediskeys.delivery_from_value(json.loads(value)["d"])
            for key in conversations.of(delivery):
                by_pair.setdefault(key, []).append(value)
    for key, values in by_pair.items():
        await link.execute("EVAL", _MERGE, 1, rediskeys.history(key), max(limit, 1), *values)
        for name in conversations.members(key):
            await link.execute("SADD", rediskeys.conversations_of(name), key)
    for list_key in groups:
        group = list_key[prefix:]
        for name in group[1:].split(_SEPARATOR):
            await link.execute("SREM", rediskeys.conversations_of(name), group)
        await link.execute("DEL", list_key)
    return len(by_pair)
