"""
The names a cluster uses in Redis, and how values are written there.

Every key and channel of the Redis backend is named here, so the store, the
registry and the login guard agree on them, and an operator can read in one
place what a node keeps in Redis.
"""

from __future__ import annotations

import json
from typing import Any

from chat.server.conversations import EVERYONE
from chat.server.events import Delivery, Kind, SessionInfo

PREFIX = "chat:"

# --- store ---------------------------------------------------------------------

#: A user's inbox: a stream of deliveries not yet shown to them (offline
#: messages, and messages for them on their way to another node).
INBOX = PREFIX + "inbox:"
#: Hashes of user name to last-seen time, and to personal introduction.
LAST_SEEN = PREFIX + "last_seen"
INTROS = PREFIX + "intro"
#: The version of the data (L{chat.server.backends.redis.schema}), and the
#: lock a node holds while it brings the data to its version.
SCHEMA = PREFIX + "schema"
SCHEMA_LOCK = PREFIX + "schema-lock"
#: A history list per conversation (newest first; see
#: L{chat.server.conversations}), the counter that orders entries of
#: different conversations, and each user's conversations (a set).
HISTORY = PREFIX + "conversation:"
HISTORY_PUBLIC = PREFIX + "history-public"
HISTORY_SEQ = PREFIX + "history-seq"
CONVERSATIONS_OF = PREFIX + "conversations-of:"
#: Every room: a hash of key (C{#} and the name in lower case) to the name
#: as created; each room's members (a set); each user's read markers (a
#: hash of conversation to time).
ROOMS = PREFIX + "rooms"
ROOM_MEMBERS = PREFIX + "room-members:"
READ = PREFIX + "read:"
#: A resume token by digest (a hash), and the digests issued to a user (a set).
TOKEN = PREFIX + "token:"
TOKENS_OF = PREFIX + "tokens-of:"

# --- presence --------------------------------------------------------------------

#: Who is logged in where: user name to "<node> <claim token>".
ONLINE = PREFIX + "online"
#: A node's heartbeat key (expires unless refreshed), and its users (a set).
NODE = PREFIX + "node:"
NODE_USERS = PREFIX + "node-users:"
#: Every node that has announced itself, with its last heartbeat time.
NODES = PREFIX + "nodes"

# --- login guard -----------------------------------------------------------------

#: Login attempts per (user, address) digest, counted before the password
#: is checked: a hash of "n", the failures and the checks in progress
#: together, and "f", the failures alone; expiring with the block time.
ATTEMPTS = PREFIX + "attempts:"
#: Blocks: digest to the time they end (a sorted set).
BLOCKS = PREFIX + "blocks"
#: The key of the digests above, made by the first node, shared by all.
GUARD_KEY = PREFIX + "guard-key"

# --- channels ----------------------------------------------------------------------

PRESENCE_CHANNEL = PREFIX + "presence"
BROADCAST_CHANNEL = PREFIX + "broadcast"
INTRO_CHANNEL = PREFIX + "intro"
GUARD_CHANNEL = PREFIX + "guard"
#: Rooms joined and left, and messages to rooms, for the other nodes.
ROOMS_CHANNEL = PREFIX + "rooms"
#: The admins' requests to every node: kicks, announcements, the sessions.
ADMIN_CHANNEL = PREFIX + "admin"
#: Each node's own channel: inbox notifications and evictions for it.
NODE_CHANNEL = PREFIX + "to:"


def inbox(name: str) -> str:
    return INBOX + name


def history(conversation: str) -> str:
    return HISTORY_PUBLIC if conversation == EVERYONE else HISTORY + conversation


def conversations_of(name: str) -> str:
    return CONVERSATIONS_OF + name


def node_channel(node: str) -> str:
    return NODE_CHANNEL + node


def delivery_value(d: Delivery) -> dict[str, Any]:
    value = {
        "id": d.id,
        "from": d.sender,
        "kind": d.kind.value,
        "text": d.text,
        "at": d.sent_at,
        "to": list(d.to),
    }
    if d.room:
        value["room"] = d.room
    return value


def delivery_from_value(v: dict[str, Any]) -> Delivery:
    return Delivery(
        v["from"],
        v["text"],
        _KIND_OF.get(v["kind"]) or Kind(v["kind"]),
        float(v["at"]),
        v["id"],
        tuple(v["to"]),
        v.get("room", ""),
    )


#: Each kind by its value: a dictionary's lookup, where calling the enum is
#: Python code (an unknown value still goes to it, and is refused there).
_KIND_OF = {kind.value: kind for kind in Kind}


def session_value(s: SessionInfo) -> dict[str, Any]:
    return {
        "user": s.user,
        "edge": s.edge,
        "address": s.address,
        "node": s.node,
        "since": s.since,
        "active": s.active,
    }


def session_from_value(v: dict[str, Any]) -> SessionInfo:
    return SessionInfo(
        str(v["user"]), str(v["edge"]), str(v["address"]), v["node"], float(v["since"]), float(v["active"])
    )


#: A JSON string, other than ASCII kept as it is (the C function C{json} uses).
_quote = json.encoder.encode_basestring


def encode_delivery(d: Delivery) -> str:
    """
    The JSON of L{delivery_value}, compact, written out directly: every
    message that crosses to another node or goes into history is encoded,
    and a dict handed to the encoder cost twice as much.
    """
    to = d.to
    names = _quote(to[0]) if len(to) == 1 else ",".join(map(_quote, to))
    room = f',"room":{_quote(d.room)}' if d.room else ""
    return (
        f'{{"id":{_quote(d.id)},"from":{_quote(d.sender)},"kind":{_KINDS[d.kind]},'
        f'"text":{_quote(d.text)},"at":{d.sent_at!r},"to":[{names}]{room}}}'
    )


#: Each kind as its JSON string (an enum's C{value} is a Python-level property).
_KINDS = {kind: _quote(kind.value) for kind in Kind}


def decode_delivery(text: str) -> Delivery:
    return delivery_from_value(json.loads(text))
