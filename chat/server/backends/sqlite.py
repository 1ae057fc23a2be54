"""
The embedded backend: what must survive a restart (offline messages,
last-seen times, intros) in SQLite.

The service sees only L{IStore}; every method returns a Deferred that fires
once the change is durable, so "stored for later" is never said before it is
true.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from chat.server import conversations, search
from chat.server.counters import Durations
from chat.server.events import Delivery, Kind, StoredMessage
from chat.server.health import Backoff, Health
from chat.server.interfaces import ConversationState, IStore, Room, Snapshot, StoreError, Unavailable

T = TypeVar("T")


class _PendingCounts:
    """
    How many stored messages each user has not yet acknowledged.

    Kept in memory so a login with nothing waiting (the usual case) never
    waits for the database.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        self._counts[name] = self._counts.get(name, 0) + n

    def remove(self, name: str, n: int) -> None:
        left = self._counts.get(name, 0) - n
        if left > 0:
            self._counts[name] = left
        else:
            self._counts.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._counts


def _forget(messages: Sequence[StoredMessage], pending: _PendingCounts) -> None:
    counts: dict[str, int] = {}
    for m in messages:
        counts[m.recipient] = counts.get(m.recipient, 0) + 1
    for name, n in counts.items():
        pending.remove(name, n)


#: The schema, one step per version (C{PRAGMA user_version}).  A database
#: is brought up to the newest version when it is opened; each step runs
#: once, in one transaction.  Version 1 is the first release's, whose
#: databases say 0 (its statements are idempotent, so they run on those too).
_MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    """
    CREATE TABLE IF NOT EXISTS offline (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        recipient TEXT NOT NULL,
        sender TEXT NOT NULL,
        kind TEXT NOT NULL,
        text TEXT NOT NULL,
        sent_at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS offline_by_recipient ON offline (recipient, id);
    CREATE TABLE IF NOT EXISTS profile (
        name TEXT PRIMARY KEY,
        last_seen REAL,
        intro TEXT
    );
    """,
    """
    ALTER TABLE offline ADD COLUMN message_id TEXT NOT NULL DEFAULT '';
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        message_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        kind TEXT NOT NULL,
        text TEXT NOT NULL,
        sent_at REAL NOT NULL,
        recipients TEXT NOT NULL
    );
    CREATE INDEX history_by_owner ON history (owner, seq);
    """,
    """
    CREATE TABLE resume_token (
        digest TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        expires REAL NOT NULL,
        used INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX resume_token_by_name ON resume_token (name);
    """,
    # Version 4: history kept once per message, by conversation, rather
    # than once per user who sent or received it; who is in which
    # conversation, in member.
    lambda conn: _history_by_conversation(conn),
    # Version 5: rooms and read markers; a message to several users kept in
    # each recipient's conversation with its sender rather than the group's.
    lambda conn: _rooms_and_pairs(conn),
    # Version 6: the full-text index of messages, for search (where this
    # SQLite has FTS5; made later on a database opened without it).
    lambda conn: _search_index(conn),
    # Version 7: messages enter that index once they have been kept a
    # while, not as they are written (L{_index_lazily}).
    lambda conn: _index_lazily(conn),
)
SCHEMA_VERSION = len(_MIGRATIONS)

#: Seconds a message is kept before it enters the search index, and the
#: most rows one write indexes (a backlog is taken a chunk per write, so no
#: write waits long for it).  Search reads the rows not indexed yet.
INDEX_AFTER = 30.0
INDEX_CHUNK = 5000

#: How much the probe of a store that is down writes (and takes back).
PROBE_BYTES = 65536

#: The page cache of the writer's connection, and how many WAL pages
#: gather before they are copied back into the database.
CACHE_KIB = 65536
CHECKPOINT_PAGES = 10000

#: The buckets of how long the writer takes per batch, in seconds (each
#: commit waits for an fsync: synchronous=FULL).
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _check_version(conn: sqlite3.Connection) -> None:
    """Refuse a database from a newer server before changing anything in it."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the database has schema version {version}, newer than this server's {SCHEMA_VERSION}"
        )


def _migrate(conn: sqlite3.Connection, until: int = SCHEMA_VERSION) -> None:
    """Bring the database up to version C{until} (the newest, but for a test's older file)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    # Version 0 is a new database or the first release's: step 1 for both.
    for number in range(version + 1 if version else 1, until + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            step = _MIGRATIONS[number - 1]
            if callable(step):
                step(conn)
            else:
                for statement in step.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _history_by_conversation(conn: sqlite3.Connection) -> None:
    """
    Version 3 to 4: each message of the users' histories once, in its
    conversation (everyone's, or the group of its sender and recipients),
    in the order it was first kept.  The copies of a message share its id;
    messages of the first releases have none, and are told apart by what
    they say and when.  Version 4's layout is written out here, as it was
    released, for version 5 to take from.
    """
    conn.execute("CREATE TABLE conversation (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE)")
    conn.execute(
        """
        CREATE TABLE message (
            seq INTEGER PRIMARY KEY,
            conversation INTEGER NOT NULL,
            message_id TEXT NOT NULL,
            sender TEXT NOT NULL,
            kind TEXT NOT NULL,
            text TEXT NOT NULL,
            sent_at REAL NOT NULL,
            recipients TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX message_by_conversation ON message (conversation, seq)")
    conn.execute(
        "CREATE TABLE member (name TEXT NOT NULL, conversation INTEGER NOT NULL,"
        " PRIMARY KEY (name, conversation)) WITHOUT ROWID"
    )
    ids: dict[str, int] = {}
    seen: set[tuple[object, ...]] = set()
    rows = []
    for message_id, sender, kind, text, sent_at, to in conn.execute(
        "SELECT message_id, sender, kind, text, sent_at, recipients FROM history ORDER BY seq"
    ):
        names = json.loads(to)
        if kind == Kind.BROADCAST.value and not names:
            key = conversations.EVERYONE
        else:
            key = "@" + _RECIPIENTS.join(sorted({sender, *names}))
        same = (key, message_id) if message_id else (key, sender, kind, text, sent_at)
        if same in seen:
            continue
        seen.add(same)
        number = ids.setdefault(key, len(ids) + 1)
        rows.append((number, message_id, sender, kind, text, sent_at, _RECIPIENTS.join(names)))
    conn.executemany("INSERT INTO conversation (id, key) VALUES (?, ?)", [(n, k) for k, n in ids.items()])
    conn.executemany(
        "INSERT INTO member (name, conversation) VALUES (?, ?)",
        [(name, n) for k, n in ids.items() if k for name in k[1:].split(_RECIPIENTS)],
    )
    conn.executemany(
        "INSERT INTO message (conversation, message_id, sender, kind, text, sent_at, recipients)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("DROP TABLE history")


def _rooms_and_pairs(conn: sqlite3.Connection) -> None:
    """
    Version 4 to 5: the tables of rooms and read markers, and a room
    column for messages.  Version 4 kept a message to several users in the
    conversation of the whole group; now it is in each recipient's
    conversation with its sender, so every message is read again, in order,
    into the conversations L{conversations.of} names, and the groups'
    conversations go.
    """
    conn.execute("DROP INDEX message_by_conversation")
    conn.execute("ALTER TABLE message RENAME TO message_v4")
    for statement in _CONVERSATION_TABLES[1:]:
        conn.execute(statement)
    ids = {key: number for number, key in conn.execute("SELECT id, key FROM conversation")}
    fresh = max(ids.values(), default=0)
    rows = []
    for message_id, sender, kind, text, sent_at, to in conn.execute(
        "SELECT message_id, sender, kind, text, sent_at, recipients FROM message_v4 ORDER BY seq"
    ):
        delivery = _row_delivery(message_id, sender, kind, text, sent_at, to, "")
        for key in conversations.of(delivery):
            if key not in ids:
                fresh += 1
                ids[key] = fresh
                conn.execute("INSERT INTO conversation (id, key) VALUES (?, ?)", (fresh, key))
                conn.executemany(
                    "INSERT OR IGNORE INTO member (name, conversation) VALUES (?, ?)",
                    [(name, fresh) for name in conversations.members(key)],
                )
            rows.append((ids[key], message_id, sender, kind, text, sent_at, to, ""))
    conn.executemany(_insert_history(1), rows)
    conn.execute("DROP TABLE message_v4")
    groups = [(number,) for key, number in ids.items() if key.startswith("@") and key.count(_RECIPIENTS) > 1]
    conn.executemany("DELETE FROM member WHERE conversation = ?", groups)
    conn.executemany("DELETE FROM conversation WHERE id = ?", groups)


def has_fts5(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite has FTS5, the full-text index search uses."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.fts5_probe USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    conn.execute("DROP TABLE temp.fts5_probe")
    return True


def _has_index(conn: sqlite3.Connection) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'message_text'")
    return found.fetchone() is not None


def _search_index(conn: sqlite3.Connection) -> None:
    """
    The full-text index of the messages' text (FTS5, with the folding of
    L{chat.server.search}: case and accents do not count), kept by triggers
    as rows are written and pruned, and filled with what is kept already.
    Without FTS5 there is none, and search scans instead.
    """
    if _has_index(conn) or not has_fts5(conn):
        return
    conn.execute(
        "CREATE VIRTUAL TABLE message_text USING fts5(text, content='message', content_rowid='seq',"
        " tokenize='unicode61 remove_diacritics 2')"
    )
    conn.execute(
        "CREATE TRIGGER message_text_insert AFTER INSERT ON message BEGIN"
        " INSERT INTO message_text (rowid, text) VALUES (new.seq, new.text); END"
    )
    conn.execute(
        "CREATE TRIGGER message_text_delete AFTER DELETE ON message BEGIN"
        " INSERT INTO message_text (message_text, rowid, text) VALUES ('delete', old.seq, old.text); END"
    )
    conn.execute("INSERT INTO message_text (message_text) VALUES ('rebuild')")


def _index_lazily(conn: sqlite3.Connection) -> None:
    """
    The search index no longer follows each insert (version 6's trigger):
    it is filled by the writer, in chunks, with the messages kept for at
    least L{INDEX_AFTER} seconds, up to the row C{search_indexed.upto};
    search scans the rows after it.  A message pruned before then (the
    history of a busy conversation turns over in seconds) never costs the
    index anything: indexing it and taking it out again were half of what
    the writer spent per message.  Rows up to C{upto} leave the index when
    they are pruned, as before.
    """
    if not _has_index(conn):
        return
    conn.execute("DROP TRIGGER IF EXISTS message_text_insert")
    conn.execute("DROP TRIGGER IF EXISTS message_text_delete")
    conn.execute("CREATE TABLE IF NOT EXISTS search_indexed (upto INTEGER NOT NULL)")
    conn.execute("DELETE FROM search_indexed")
    # Version 6 indexed every row.
    conn.execute("INSERT INTO search_indexed SELECT coalesce(max(seq), 0) FROM message")
    conn.execute(
        "CREATE TRIGGER message_text_delete AFTER DELETE ON message"
        " WHEN old.seq <= (SELECT upto FROM search_indexed) BEGIN"
        " INSERT INTO message_text (message_text, rowid, text) VALUES ('delete', old.seq, old.text); END"
    )


def _indexed_upto(conn: sqlite3.Connection) -> int:
    """The last row in the search index: those up to it are in it (or pruned), the later ones not yet."""
    return int(conn.execute("SELECT upto FROM search_indexed").fetchone()[0])


#: Version 5's tables: each conversation numbered once; its messages; who
#: is in which (direct conversations and rooms); the rooms; how far each
#: user has read each conversation.  A new database gets them through
#: versions 4 and 5.
_CONVERSATION_TABLES = (
    "CREATE TABLE conversation (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE)",
    """
    CREATE TABLE message (
        seq INTEGER PRIMARY KEY,
        conversation INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        kind TEXT NOT NULL,
        text TEXT NOT NULL,
        sent_at REAL NOT NULL,
        recipients TEXT NOT NULL,
        room TEXT NOT NULL
    )
    """,
    "CREATE INDEX message_by_conversation ON message (conversation, seq)",
    "CREATE TABLE room (key TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL) WITHOUT ROWID",
    "CREATE TABLE read_marker (name TEXT NOT NULL, conversation INTEGER NOT NULL, at REAL NOT NULL,"
    " PRIMARY KEY (name, conversation)) WITHOUT ROWID",
)


#: What separates the recipients of a message in its row (no name has whitespace).
_RECIPIENTS = "\t"

#: Rows of history written by one statement (8 values each: under the 999
#: variables the oldest SQLite allows); a batch is a few such statements,
#: each one step of SQLite rather than one per row.
_ROWS_PER_INSERT = 120
_COLUMNS = 8
_INSERT_HISTORY = (
    "INSERT INTO message (conversation, message_id, sender, kind, text, sent_at, recipients, room) VALUES "
)
_SELECTED = "seq, message_id, sender, kind, text, sent_at, recipients, room"
_SELECTED_AS_M = ", ".join("m." + column for column in _SELECTED.split(", "))


@functools.cache
def _insert_history(rows: int) -> str:
    return _INSERT_HISTORY + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * rows)


def _row_delivery(
    message_id: str, sender: str, kind: str, text: str, sent_at: float, to: str, room: str
) -> Delivery:
    recipients = tuple(to.split(_RECIPIENTS)) if to else ()
    return Delivery(sender, text, Kind(kind), sent_at, message_id, recipients, room)


_Op = Callable[[sqlite3.Connection], Any]

#: SQLite's errors that say the database cannot be used now (its disk, its
#: file, a lock held elsewhere), as opposed to a mistake in a statement.
_UNAVAILABLE_CODES = (
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_READONLY",
    "SQLITE_CANTOPEN",
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_PERM",
    "SQLITE_NOMEM",
)
#: The same, by their messages, for Pythons before 3.11 (no error names).
_UNAVAILABLE_MESSAGES = (
    "database or disk is full",
    "disk I/O error",
    "readonly database",
    "unable to open database",
    "database is locked",
    "database table is locked",
    "access permission denied",
    "out of memory",
)


def _why_not(path: str, error: sqlite3.Error) -> str:
    """
    SQLite's reason, made useful: "unable to open database file" is said
    for a file that is missing, unreadable, or in a directory where its
    -wal file cannot be made.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        return f"permission denied (the server's user must read and write {path})"
    if os.path.isdir(directory) and not os.access(directory, os.W_OK):
        return f"permission denied (the server's user must write in {directory}, for the -wal file)"
    return str(error)


def _cannot_write(error: sqlite3.Error) -> bool:
    """Whether C{error} means the database cannot be used now (not a bug)."""
    name = getattr(error, "sqlite_errorname", None)
    if isinstance(name, str):
        return name.startswith(_UNAVAILABLE_CODES)
    return any(text in str(error) for text in _UNAVAILABLE_MESSAGES)


@implementer(IStore)
class SQLiteStore:
    """
    SQLite on a single writer thread, with group commit.

    Operations queue on the reactor thread and run in order on one thread
    that owns the connection.  While one batch is being committed the next
    ones gather, and then run together in a single transaction, so under load
    many acknowledgements share one commit.  Each operation runs inside its
    own savepoint, so one that fails does not take the others down with it.

    The order is strict first-in first-out: a message saved for a user before
    that user asks for their messages is always in the answer.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        reactor: IReactorFromThreads,
        history: int = 200,
        clock: IReactorTime | None = None,
    ) -> None:
        self._path = path
        #: Down while the database cannot be written (a full disk, an I/O
        #: error, a file made read-only): found by the operations that fail,
        #: and back once one succeeds; while down, a probe every few seconds
        #: finds out, so an idle server comes back too.
        self._clock: IReactorTime = clock if clock is not None else reactor  # type: ignore[assignment]
        self.health = Health(f"the database {path}", self._clock)
        self._probe_backoff = Backoff(first=1.0, most=30.0)
        self._probe_call: IDelayedCall | None = None
        self._history_limit = history
        #: Each conversation's number (its key is written once, in
        #: conversation, and its rows are numbered), and the conversations
        #: whose number and members are written: the others are, with their
        #: first message (again, if that write failed).
        self._conversations: dict[str, int] = {}
        self._written: set[str] = set()
        #: The highest number given to a conversation (numbers may have
        #: gaps: version 5 dropped the groups' conversations).
        self._last_number = 0
        #: Rows in each conversation, to prune one once it has some to spare
        #: rather than on every insert.
        self._history_rows: dict[int, int] = {}
        self._reactor = reactor
        self._queue: list[tuple[_Op, Deferred[Any]]] = []
        self._running: Deferred[Any] | None = None
        #: Operations in the batch being written.
        self._writing = 0
        #: How long the writer took for each batch it committed (for the metrics).
        self.commits = Durations(COMMIT_BUCKETS)
        #: Operations in those batches.
        self.operations = 0
        self._closed: Deferred[None] | None = None
        self._pending = _PendingCounts()
        try:
            self._conn = self._connect()
            self._snapshot = self._load()
            #: Whether search has the full-text index (FTS5), or scans.
            self.indexed = _has_index(self._conn)
            #: The writer's: (time, last row) of recent writes, to find the
            #: rows kept for L{INDEX_AFTER} seconds, and the last of those.
            #: How far the index goes is read from the database, in the
            #: transaction that uses it, so a write rolled back cannot leave
            #: this store believing rows indexed that are not.
            self._written_rows: collections.deque[tuple[float, int]] = collections.deque()
            self._due_rows = 0
            if not self.indexed:
                self.log.warn(
                    "this SQLite ({version}) has no FTS5: search reads through the kept history"
                    " instead of an index",
                    version=sqlite3.sqlite_version,
                )
        except sqlite3.Error as e:
            raise StoreError(f"cannot use database {path!r}: {_why_not(path, e)}") from None
        # Started with the first operation, so that a server which fails to
        # start (a port in use) has no thread left to keep the process alive.
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="chat-store")

    def _connect(self) -> sqlite3.Connection:
        # Every private message is in here: a new file is its owner's alone
        # (SQLite gives its -wal and -shm files the same mode).
        if self._path != ":memory:" and not self._path.startswith("file:"):
            try:
                os.close(os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            except OSError as e:
                raise sqlite3.OperationalError(f"{e.strerror}: {self._path}") from None
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        # check_same_thread=False: opened here, then used only by the writer thread.
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            _check_version(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before the sender is told "stored".
            conn.execute("PRAGMA synchronous=FULL")
            # History touches an index page per owner in every commit: keep
            # those pages in memory (no pread each time), and copy the WAL
            # back less often, so a page written by many commits is copied
            # once (measured: 6 of the 9.5 system calls of a private message
            # were SQLite's reads and writes of such pages).
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
            _migrate(conn)
            if not _has_index(conn) and has_fts5(conn):
                # Made on a machine whose SQLite had no FTS5.
                conn.execute("BEGIN IMMEDIATE")
                _search_index(conn)
                _index_lazily(conn)
                conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def _load(self) -> Snapshot:
        """Read the startup state; runs before the reactor serves anyone."""
        seen: dict[str, float] = {}
        intros: dict[str, str] = {}
        for name, last_seen, intro in self._conn.execute("SELECT name, last_seen, intro FROM profile"):
            if last_seen is not None:
                seen[name] = last_seen
            if intro is not None:
                intros[name] = intro
        for name, count in self._conn.execute("SELECT recipient, count(*) FROM offline GROUP BY recipient"):
            self._pending.add(name, count)
        for number, key in self._conn.execute("SELECT id, key FROM conversation"):
            self._conversations[key] = number
        self._written.update(self._conversations)
        self._last_number = max(self._conversations.values(), default=0)
        for number, count in self._conn.execute(
            "SELECT conversation, count(*) FROM message GROUP BY conversation"
        ):
            self._history_rows[number] = count
        names = dict(self._conn.execute("SELECT key, name FROM room"))
        members: dict[str, set[str]] = {key: set() for key in names}
        for key, name in self._conn.execute(
            "SELECT c.key, m.name FROM member AS m JOIN conversation AS c ON c.id = m.conversation"
            " WHERE c.key IN (SELECT key FROM room)"
        ):
            members[key].add(name)
        rooms = {key: Room(names[key], frozenset(members[key])) for key in names}
        return Snapshot(seen, intros, rooms)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def queued(self) -> int:
        """Operations not done yet: waiting for the writer, or in the batch it is writing."""
        return len(self._queue) + self._writing

    # --- the writer ----------------------------------------------------------

    def _submit(self, op: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        if self._closed is not None:
            return fail(StoreError("the store is closed"))
        d: Deferred[T] = Deferred()
        self._queue.append((op, d))
        if self._running is None:
            self._run_next()
        return d

    def _in_thread(self, f: Callable[..., T], *args: object) -> Deferred[T]:
        if not self._pool.started:
            self._pool.start()
        return deferToThreadPool(self._reactor, self._pool, f, *args)

    def _run_next(self) -> None:
        batch, self._queue = self._queue, []
        ops = [op for op, _ in batch]
        self._writing = len(batch)
        running = self._in_thread(self._timed_batch, ops)
        self._running = running
        running.addBoth(self._batch_done, batch)

    def _timed_batch(self, ops: list[_Op]) -> tuple[list[tuple[bool, Any]], float]:
        """In the writer thread: L{_run_batch}, and the seconds it took."""
        started = time.perf_counter()
        results = self._run_batch(ops)
        return results, time.perf_counter() - started

    def _run_batch(self, ops: list[_Op]) -> list[tuple[bool, Any]]:
        """In the writer thread: run C{ops} in one transaction."""
        conn = self._conn
        results: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                conn.execute("SAVEPOINT op")
                try:
                    result = op(conn)
                except Exception:
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back itself
                        # (a full disk, an I/O error): nothing of this batch
                        # is kept, so none of it may be acknowledged.
                        raise
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, Failure()))
                else:
                    conn.execute("RELEASE op")
                    results.append((True, result))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _batch_done(
        self,
        outcome: tuple[list[tuple[bool, Any]], float] | Failure,
        batch: list[tuple[_Op, Deferred[Any]]],
    ) -> None:
        # Callbacks may queue more work or close the store; while they run,
        # this batch still counts as running, so both just wait their turn.
        self._writing = 0
        if isinstance(outcome, Failure):
            outcome = self._judge(outcome)
            if not outcome.check(Unavailable):
                self.log.failure("store batch of {count} failed", outcome, count=len(batch))
            for _, d in batch:
                d.errback(outcome)
        else:
            done, seconds = outcome
            self.commits.record(seconds)
            self.operations += len(batch)
            results = [(ok, result if ok else self._judge(result)) for ok, result in done]
            if all(ok or not result.check(Unavailable) for ok, result in results):
                self._working()
            for (ok, result), (_, d) in zip(results, batch, strict=True):
                if ok:
                    d.callback(result)
                else:
                    d.errback(result)
        self._running = None
        if self._queue:
            self._run_next()
        elif self._closed is not None:
            self._finish_close()

    def _judge(self, f: Failure) -> Failure:
        """
        An operation's failure, as the service should see it: SQLite's
        operational errors (the disk is full, an I/O error, the file cannot
        be written) mean the database cannot be used now, not a bug, so
        they become L{Unavailable} and the store is down until it works.
        """
        if not (isinstance(f.value, sqlite3.Error) and _cannot_write(f.value)):
            return f
        why = f"cannot write the database {self._path}: {f.getErrorMessage()}"
        if self.health.available:
            self.health.lost(f.getErrorMessage())
            self._probe_later()
        return Failure(Unavailable(why))

    def _working(self) -> None:
        self._probe_backoff.reset()
        self.health.restored()

    def _probe_later(self) -> None:
        if self._probe_call is None and self._closed is None:
            self._probe_call = self._clock.callLater(self._probe_backoff.next(), self._probe)

    def _probe(self) -> None:
        """While down: try a small write, whose outcome says whether the database works again."""
        self._probe_call = None
        if self.health.available or self._closed is not None:
            return

        def touch(conn: sqlite3.Connection) -> None:
            # A write the size of a few messages, undone before the commit:
            # it needs the disk as real writes do, and changes nothing.  No
            # user's name starts with a space.
            conn.execute("INSERT INTO profile (name, intro) VALUES (' probe', ?)", ("x" * PROBE_BYTES,))
            conn.execute("DELETE FROM profile WHERE name = ' probe'")

        def still_down(f: Failure) -> None:
            self._probe_later()

        self._submit(touch).addErrback(still_down)

    # --- IStore --------------------------------------------------------------

    def save_offline(self, recipients: Sequence[str], delivery: Delivery) -> Deferred[None]:
        rows = [
            (name, delivery.sender, delivery.kind.value, delivery.text, delivery.sent_at, delivery.id)
            for name in recipients
        ]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO offline (recipient, sender, kind, text, sent_at, message_id)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

        for name in recipients:
            self._pending.add(name)
        d = self._submit(insert)

        def failed(f: Failure) -> Failure:
            for name in recipients:
                self._pending.remove(name, 1)
            return f

        return d.addErrback(failed)

    def offline_for(self, name: str) -> Deferred[list[StoredMessage]]:
        if name not in self._pending:
            return succeed([])

        def select(conn: sqlite3.Connection) -> list[StoredMessage]:
            return [
                StoredMessage(row_id, name, Delivery(sender, text, Kind(kind), sent_at, message_id))
                for row_id, sender, kind, text, sent_at, message_id in conn.execute(
                    "SELECT id, sender, kind, text, sent_at, message_id FROM offline"
                    " WHERE recipient = ? ORDER BY id",
                    (name,),
                )
            ]

        return self._submit(select)

    def ack(self, messages: Sequence[StoredMessage]) -> Deferred[None]:
        if not messages:
            return succeed(None)
        ids = [(m.id,) for m in messages]

        def delete(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM offline WHERE id = ?", ids)

        def forget(_: None) -> None:
            _forget(messages, self._pending)

        return self._submit(delete).addCallback(forget)

    def set_intro(self, name: str, text: str) -> Deferred[None]:
        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO profile (name, intro) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET intro = excluded.intro",
                (name, text),
            )

        return self._submit(upsert)

    def mark_seen(self, seen: Mapping[str, float]) -> Deferred[None]:
        rows = dict(seen)

        def upsert(conn: sqlite3.Connection) -> None:
            # One statement for the whole batch, not one per row: sqlite3
            # lets go of the GIL around each statement, and a batch of
            # thousands of rows, a row at a time, would fight the reactor
            # thread for it thousands of times.
            conn.execute(
                "INSERT INTO profile (name, last_seen) SELECT key, value FROM json_each(?) WHERE true"
                " ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen",
                (json.dumps(rows),),
            )

        return self._submit(upsert)

    def _numbered(self, keys: Iterable[str]) -> tuple[list[int], list[tuple[int, str]]]:
        """
        The numbers of the conversations C{keys}, and those of them whose
        row is not known to be written (with their keys): an operation that
        uses them writes those first (L{_write_numbers}), again if it failed.
        """
        numbers = self._conversations
        written = self._written
        out = []
        new = []
        for key in keys:
            number = numbers.get(key)
            if number is None:
                number = self._new_number(key)
            if key not in written:
                new.append((number, key))
            out.append(number)
        return out, new

    def _new_number(self, key: str) -> int:
        number = self._last_number = self._last_number + 1
        self._conversations[key] = number
        return number

    def _write_numbers(self, conn: sqlite3.Connection, new: Sequence[tuple[int, str]]) -> None:
        """The rows of new conversations, and the members of the direct ones."""
        if new:
            conn.executemany("INSERT OR IGNORE INTO conversation (id, key) VALUES (?, ?)", new)
            conn.executemany(
                "INSERT OR IGNORE INTO member (name, conversation) VALUES (?, ?)",
                [(name, number) for number, key in new for name in conversations.members(key)],
            )

    def _numbers_written(self, d: Deferred[T], new: Sequence[tuple[int, str]]) -> Deferred[T]:
        if new:

            def written(result: T) -> T:
                self._written.update(key for _, key in new)
                return result

            d.addCallback(written)
        return d

    def save_history(self, entries: Sequence[tuple[Delivery, str]]) -> Deferred[None]:
        limit = self._history_limit
        if not limit or not entries:
            return succeed(None)
        numbers = self._conversations
        written = self._written
        new: list[tuple[int, str]] = []
        counts = self._history_rows
        spare = max(16, limit // 4)
        prune: list[int] = []
        values: list[object] = []
        for d, key in entries:
            number = numbers.get(key)
            if number is None:
                number = self._new_number(key)
            if key not in written:
                new.append((number, key))
            count = counts[number] = counts.get(number, 0) + 1
            if count >= limit + spare:
                prune.append(number)
                counts[number] = limit
            to = d.to
            values += (
                number,
                d.id,
                d.sender,
                d.kind._value_,  # (the enum's value, less its Python-level property)
                d.text,
                d.sent_at,
                to[0] if len(to) == 1 else _RECIPIENTS.join(to),
                d.room,
            )

        now = self._clock.seconds()

        def insert(conn: sqlite3.Connection) -> None:
            # A statement per _ROWS_PER_INSERT rows, not per row: sqlite3
            # lets go of the GIL around each statement, and a row at a time
            # the writer thread and the reactor would trade it for every
            # message.
            self._write_numbers(conn, new)
            step = _COLUMNS * _ROWS_PER_INSERT
            whole = len(values) - len(values) % step
            cursor = None
            for start in range(0, whole, step):
                cursor = conn.execute(_insert_history(_ROWS_PER_INSERT), values[start : start + step])
            if whole < len(values):
                cursor = conn.execute(_insert_history((len(values) - whole) // _COLUMNS), values[whole:])
            if self.indexed and cursor is not None and cursor.lastrowid is not None:
                self._index_kept(conn, now, cursor.lastrowid)
            for number in prune:
                conn.execute(
                    "DELETE FROM message WHERE conversation = ? AND seq <"
                    " (SELECT seq FROM message WHERE conversation = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                    (number, number, limit - 1),
                )

        return self._numbers_written(self._submit(insert), new)

    def _index_kept(self, conn: sqlite3.Connection, now: float, last: int) -> None:
        """
        In the writer thread, after a write whose last row is C{last}: put
        into the search index the rows kept for L{INDEX_AFTER} seconds now
        (those written up to a write that long ago), L{INDEX_CHUNK} at most;
        a longer backlog goes with the next writes.
        """
        marks = self._written_rows
        if marks and now - marks[-1][0] < 1.0:
            marks[-1] = (marks[-1][0], last)  # a mark a second at most
        else:
            marks.append((now, last))
        while marks and now - marks[0][0] >= INDEX_AFTER:
            self._due_rows = max(self._due_rows, marks.popleft()[1])
        if self._due_rows > _indexed_upto(conn):
            self._index_rows(conn, self._due_rows)

    def _index_rows(self, conn: sqlite3.Connection, due: int) -> None:
        """In the writer thread: the rows after the indexed ones, up to C{due}, into the index."""
        upto = _indexed_upto(conn)
        until = min(due, upto + INDEX_CHUNK)
        conn.execute(
            "INSERT INTO message_text (rowid, text) SELECT seq, text FROM message WHERE seq > ? AND seq <= ?",
            (upto, until),
        )
        conn.execute("UPDATE search_indexed SET upto = ?", (until,))

    def history_for(self, name: str, count: int) -> Deferred[list[Delivery]]:
        count = min(count, self._history_limit)
        if count <= 0:
            return succeed([])

        def select(conn: sqlite3.Connection) -> list[Delivery]:
            # Range scans of the (conversation, seq) index: everyone's, and
            # each of the user's own (a message to several once), newest
            # first, merged.
            rows = conn.execute(
                f"SELECT * FROM (SELECT {_SELECTED}"
                " FROM message WHERE conversation = (SELECT id FROM conversation WHERE key = ?)"
                " ORDER BY seq DESC LIMIT ?)"
                " UNION ALL"
                f" SELECT * FROM (SELECT max(seq) AS seq, {_SELECTED.partition(', ')[2]}"
                " FROM message WHERE conversation IN (SELECT conversation FROM member WHERE name = ?)"
                " GROUP BY CASE WHEN message_id = '' THEN -seq ELSE message_id END"
                " ORDER BY seq DESC LIMIT ?)"
                " ORDER BY seq DESC LIMIT ?",
                (conversations.EVERYONE, count, name, count, count),
            ).fetchall()
            return [_row_delivery(*row[1:]) for row in reversed(rows)]

        return self._submit(select)

    def conversation_history(
        self, key: str, count: int, before: str | None = None
    ) -> Deferred[tuple[list[Delivery], bool]]:
        def select(conn: sqlite3.Connection) -> tuple[list[Delivery], bool]:
            found = conn.execute("SELECT id FROM conversation WHERE key = ?", (key,)).fetchone()
            if found is None or count <= 0:
                return [], False
            [number] = found
            below = None
            if before is not None:
                # The conversation's rows only (a few hundred at most): no index on ids.
                row = conn.execute(
                    "SELECT seq FROM message WHERE conversation = ? AND message_id = ?", (number, before)
                ).fetchone()
                if row is None:
                    return [], False
                below = row[0]
            rows = conn.execute(
                f"SELECT {_SELECTED} FROM message WHERE conversation = ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?",
                (number, below if below is not None else 1 << 62, count + 1),
            ).fetchall()
            page = [_row_delivery(*row[1:]) for row in reversed(rows[:count])]
            return page, len(rows) > count

        return self._submit(select)

    def search(
        self, name: str, words: Sequence[str], count: int, before: str | None = None
    ) -> Deferred[tuple[list[tuple[Delivery, str]], bool] | None]:
        indexed = self.indexed

        def select(conn: sqlite3.Connection) -> tuple[list[tuple[Delivery, str]], bool] | None:
            # The conversations C{name} may see: everyone's, and those they
            # are a member of (their direct ones, the rooms they are in).
            visible = (
                "SELECT id FROM conversation WHERE key = ''"
                " UNION SELECT conversation FROM member WHERE name = :name"
            )
            below = 1 << 62
            if before is not None:
                row = conn.execute(
                    f"SELECT min(seq) FROM message WHERE message_id = :id AND conversation IN ({visible})",
                    {"id": before, "name": name},
                ).fetchone()
                if row[0] is None:
                    return None
                below = row[0]
            upto = _indexed_upto(conn) if indexed else 0
            args = {"name": name, "below": below, "query": search.fts_query(words), "upto": upto}
            # The rows not in the index yet (the newest), read through; then
            # the index's: both newest first.
            rows: Iterable[Any] = conn.execute(
                f"SELECT {_SELECTED_AS_M}, c.key FROM message AS m"
                " JOIN conversation AS c ON c.id = m.conversation"
                f" WHERE m.conversation IN ({visible}) AND m.seq < :below AND m.seq > :upto"
                " ORDER BY m.seq DESC",
                args,
            )
            if indexed:
                rows = itertools.chain(
                    rows,
                    conn.execute(
                        f"SELECT {_SELECTED_AS_M}, c.key FROM message_text"
                        " JOIN message AS m ON m.seq = message_text.rowid"
                        " JOIN conversation AS c ON c.id = m.conversation"
                        f" WHERE message_text MATCH :query AND m.conversation IN ({visible})"
                        " AND m.seq < :below AND m.seq <= :upto ORDER BY m.seq DESC",
                        args,
                    ),
                )
            kept = ((row[0], _row_delivery(*row[1:-1]), row[-1]) for row in rows)
            # Newest first already: read only as many rows as the page needs.
            return search.newest_matching(kept, words, count, None, newest_first=True)

        return self._submit(select)

    def save_room(self, key: str, name: str) -> Deferred[bool]:
        _, new = self._numbered([key])
        now = self._clock.seconds()

        def create(conn: sqlite3.Connection) -> bool:
            self._write_numbers(conn, new)
            made = conn.execute(
                "INSERT OR IGNORE INTO room (key, name, created) VALUES (?, ?, ?)", (key, name, now)
            )
            return bool(made.rowcount)

        return self._numbers_written(self._submit(create), new)

    def join_room(self, key: str, user: str) -> Deferred[None]:
        [number], new = self._numbered([key])

        def join(conn: sqlite3.Connection) -> None:
            self._write_numbers(conn, new)
            conn.execute("INSERT OR IGNORE INTO member (name, conversation) VALUES (?, ?)", (user, number))

        return self._numbers_written(self._submit(join), new)

    def leave_room(self, key: str, user: str) -> Deferred[None]:
        [number], new = self._numbered([key])

        def leave(conn: sqlite3.Connection) -> None:
            self._write_numbers(conn, new)
            conn.execute("DELETE FROM member WHERE name = ? AND conversation = ?", (user, number))

        return self._numbers_written(self._submit(leave), new)

    def mark_read(self, name: str, marks: Mapping[str, float]) -> Deferred[None]:
        if not marks:
            return succeed(None)
        numbers, new = self._numbered(marks)
        rows = [(name, number, at) for number, at in zip(numbers, marks.values(), strict=True)]

        def mark(conn: sqlite3.Connection) -> None:
            self._write_numbers(conn, new)
            conn.executemany(
                "INSERT INTO read_marker (name, conversation, at) VALUES (?, ?, ?)"
                " ON CONFLICT (name, conversation) DO UPDATE SET at = max(at, excluded.at)",
                rows,
            )

        return self._numbers_written(self._submit(mark), new)

    def conversations_of(self, name: str, since: float) -> Deferred[list[ConversationState]]:
        def select(conn: sqlite3.Connection) -> list[ConversationState]:
            rows = conn.execute(
                "SELECT c.key, coalesce("
                "   (SELECT sent_at FROM message WHERE conversation = c.id ORDER BY seq DESC LIMIT 1), 0),"
                " (SELECT count(*) FROM message AS m WHERE m.conversation = c.id AND m.sender <> ?1"
                "   AND m.sent_at > coalesce("
                "     (SELECT at FROM read_marker WHERE name = ?1 AND conversation = c.id), ?2))"
                " FROM conversation AS c"
                " WHERE c.key = '' OR c.id IN (SELECT conversation FROM member WHERE name = ?1)"
                " ORDER BY c.key",
                (name, since),
            ).fetchall()
            return [
                ConversationState(key, last, unread)
                for key, last, unread in rows
                if last or conversations.is_room(key)
            ]

        return self._submit(select)

    def save_token(self, name: str, digest: str, expires: float, now: float) -> Deferred[None]:
        def replace(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM resume_token WHERE (name = ? AND used = 0) OR expires <= ?", (name, now)
            )
            conn.execute(
                "INSERT INTO resume_token (digest, name, expires) VALUES (?, ?, ?)", (digest, name, expires)
            )

        return self._submit(replace)

    def revoke_tokens(self, name: str) -> Deferred[None]:
        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM resume_token WHERE name = ?", (name,))

        return self._submit(delete)

    def use_token(self, digest: str, now: float) -> Deferred[tuple[str | None, str]]:
        def use(conn: sqlite3.Connection) -> tuple[str | None, str]:
            row = conn.execute(
                "SELECT name, expires, used FROM resume_token WHERE digest = ?", (digest,)
            ).fetchone()
            if row is None or row[1] <= now:
                return None, "expired"
            name, _, used = row
            if used:
                return name, "reused"
            conn.execute("UPDATE resume_token SET used = 1 WHERE digest = ?", (digest,))
            return name, "ok"

        return self._submit(use)

    def close(self) -> Deferred[None]:
        """
        Run what is queued, then close the database and stop the thread.

        Called once, by the service as it stops.
        """
        if self._closed is None:
            self._closed = Deferred()
            if self._probe_call is not None and self._probe_call.active():
                self._probe_call.cancel()
            self._probe_call = None
            if self._running is None:
                self._finish_close()
        return self._closed

    def _finish_close(self) -> None:
        closed = self._closed
        assert closed is not None
        if not self._pool.started:
            self._conn.close()
            closed.callback(None)
            return
        done = self._in_thread(self._conn.close)

        def stop_pool(result: object) -> None:
            self._pool.stop()
            closed.callback(None)

        done.addBoth(stop_pool)
