"""
The version of what a cluster keeps in Redis, and the steps from each
version to the next, as the SQLite store has for its file.

Version 1 kept history per user: a list of each user's messages, a
private message in both its users' lists.  Version 2 keeps it per
conversation (L{chat.server.conversations}), one entry per message.  The
first node of the new version to start moves the old lists over; nodes
that start while it does so read the history they find (everyone's list,
which did not change, and the conversations moved so far).
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

VERSION = 2

#: How long a node may take to move the data before another may try.
LOCK_SECONDS = 300

#: Version 1's lists of each user's history.
_OLD_HISTORY = rediskeys.PREFIX + "history:"


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
    moved = 0
    if old:
        moved = await _history_by_conversation(link, old, limit)
    await link.execute("SET", rediskeys.SCHEMA, VERSION)
    await link.execute("DEL", rediskeys.SCHEMA_LOCK)
    if old:
        log.info(
            "moved the history of {users} users to {conversations} conversations",
            users=len(old),
            conversations=moved,
        )


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
