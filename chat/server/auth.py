"""
Who may log in: the users file, its password checker, and the login guard.

The users file keeps the seeds' format, one ``<username> <password>`` per
line, and also accepts scrypt hashes in the password column
(``$scrypt$ln=14,r=8,p=1$<salt>$<key>``, base64), so an operator can move to
hashed passwords one user at a time.  scrypt is in the standard library
(``hashlib.scrypt``), is memory-hard, and needs no compiled dependency.

Checking a hash costs tens of milliseconds, so it runs in a thread, at most
a few at a time, with a bounded queue: a storm of logins slows logins down,
never the reactor, and never grows memory without bound.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Collection, Mapping
from typing import Protocol

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, DeferredSemaphore, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads, IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from zope.interface import Attribute, implementer

from chat.server import textrules
from chat.server.interfaces import ILoginGuard

# --- secrets ------------------------------------------------------------------


@attrs.frozen
class PlainSecret:
    password: bytes = attrs.field(repr=False)

    def verify(self, password: bytes) -> bool:
        return hmac.compare_digest(self.password, password)

    @property
    def costly(self) -> bool:
        return False


@attrs.frozen
class ScryptSecret:
    log_n: int
    r: int
    p: int
    salt: bytes = attrs.field(repr=False)
    key: bytes = attrs.field(repr=False)

    PREFIX = "$scrypt$"

    @classmethod
    def create(cls, password: bytes, log_n: int = 14, r: int = 8, p: int = 1) -> ScryptSecret:
        salt = os.urandom(16)
        return cls(log_n, r, p, salt, _scrypt(password, salt, log_n, r, p))

    def verify(self, password: bytes) -> bool:
        candidate = _scrypt(password, self.salt, self.log_n, self.r, self.p, len(self.key))
        return hmac.compare_digest(self.key, candidate)

    @property
    def costly(self) -> bool:
        return True

    def encode(self) -> str:
        def b64(b: bytes) -> str:
            return base64.b64encode(b).decode("ascii").rstrip("=")

        params = f"ln={self.log_n},r={self.r},p={self.p}"
        return f"{self.PREFIX}{params}${b64(self.salt)}${b64(self.key)}"

    @classmethod
    def decode(cls, text: str) -> ScryptSecret:
        m = _SCRYPT_RE.fullmatch(text)
        if m is None:
            raise ValueError("malformed scrypt entry")
        log_n, r, p = int(m["ln"]), int(m["r"]), int(m["p"])
        if not (1 <= log_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
            raise ValueError("scrypt parameters out of range")
        try:
            salt = _unb64(m["salt"])
            key = _unb64(m["key"])
        except ValueError:
            raise ValueError("scrypt salt or key is not base64") from None
        if len(key) < 16:
            raise ValueError("scrypt key is too short")
        return cls(log_n, r, p, salt, key)


_SCRYPT_RE = re.compile(
    r"\$scrypt\$ln=(?P<ln>\d+),r=(?P<r>\d+),p=(?P<p>\d+)"
    r"\$(?P<salt>[A-Za-z0-9+/]+={0,2})\$(?P<key>[A-Za-z0-9+/]+={0,2})"
)


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: bytes, salt: bytes, log_n: int, r: int, p: int, dklen: int = 32) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=256 * n * r + (1 << 20))


Secret = PlainSecret | ScryptSecret


# --- the users file -------------------------------------------------------------


class UsersFileError(Exception):
    """The users file cannot be used; the message names the file and line."""


NAME_RE = re.compile(rf"[^\s{textrules.CONTROL}{textrules.BIDI_CONTROLS}]{{1,64}}")


def valid_name(name: str) -> bool:
    """
    Whether C{name} may be a username: 1-64 printable characters without
    spaces, and nothing that could pass one name off as another (direction
    controls, invisible characters: L{textrules}).
    """
    return NAME_RE.fullmatch(name) is not None and textrules.refused(name) is None


#: Keys the hashes of unknown usernames in the log; new each run, so the log
#: lets an operator correlate one run's attempts and reveals nothing typed.
_LOG_KEY = os.urandom(16)


def loggable_name(name: str, known: Collection[str]) -> str:
    """
    How a username someone typed may appear in the log.

    A known username is logged as it is.  Anything else may be a password
    typed at the wrong prompt, so it is never logged as typed: it becomes
    C{unknown#} and a short keyed hash, the same for the same text within
    one run of the server.
    """
    if name in known:
        return name
    digest = hmac.new(_LOG_KEY, name.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"unknown#{digest[:10]}"


def parse_users(text: str, source: str = "users file") -> dict[str, Secret]:
    """
    Parse the users file: ``<username> <password>`` per line.

    Blank lines and lines starting with ``#`` are skipped.  The password is
    the rest of the line (trailing whitespace dropped), or a scrypt entry.
    """
    users: dict[str, Secret] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        where = f"{source}, line {lineno}"
        if len(parts) != 2:
            raise UsersFileError(f"{where}: expected '<username> <password>'")
        name, password = parts
        if not valid_name(name):
            raise UsersFileError(
                f"{where}: username must be 1-64 printable characters, "
                "without direction controls or invisible characters"
            )
        if name in users:
            raise UsersFileError(f"{where}: user {name!r} appears twice")
        if any(ord(c) < 32 or ord(c) == 127 for c in password):
            raise UsersFileError(f"{where}: password contains control characters")
        secret: Secret
        if password.startswith(ScryptSecret.PREFIX):
            try:
                secret = ScryptSecret.decode(password)
            except ValueError as e:
                raise UsersFileError(f"{where}: {e}") from None
        else:
            secret = PlainSecret(password.encode("utf-8"))
        users[name] = secret
    if not users:
        raise UsersFileError(f"{source}: no users defined")
    return users


def load_users(path: str) -> dict[str, Secret]:
    """Read and parse the users file; runs at startup, before serving."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise UsersFileError(f"users file {path!r} does not exist") from None
    except UnicodeDecodeError:
        raise UsersFileError(f"users file {path!r} is not UTF-8 text") from None
    except OSError as e:
        raise UsersFileError(f"cannot read users file {path!r}: {e.strerror}") from None
    return parse_users(text, path)


def format_user_line(name: str, secret: ScryptSecret) -> str:
    return f"{name} {secret.encode()}"


class ThreadsReactor(IReactorThreads, IReactorFromThreads):
    """A reactor with a thread pool, as the checker needs (for typing only)."""


# --- the checker ----------------------------------------------------------------


class LoginBusy(Exception):
    """Too many password checks are waiting; the client should retry later."""


@implementer(ICredentialsChecker)
class UsersChecker:
    """
    Checks usernames and passwords against the users file.

    Plain entries are compared on the reactor thread (it is as cheap as a
    dictionary lookup, and constant-time); hashed entries are verified in the
    reactor's thread pool, at most C{concurrency} at once and at most
    C{max_waiting} queued behind them.  An unknown username costs the same as
    a known one, so timing does not tell which was wrong.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        users: Mapping[str, Secret],
        reactor: ThreadsReactor,
        concurrency: int = 2,
        max_waiting: int = 256,
    ) -> None:
        self._reactor = reactor
        self._slots = DeferredSemaphore(concurrency)
        self._max_waiting = max_waiting
        self.replace(users)

    def replace(self, users: Mapping[str, Secret]) -> None:
        """
        The users file was read again: every check from now on is against
        C{users} (a check already running finishes with the old secret).
        """
        self.users = users
        hashed = [s for s in users.values() if isinstance(s, ScryptSecret)]
        self._decoy: Secret = (
            ScryptSecret(hashed[0].log_n, hashed[0].r, hashed[0].p, os.urandom(16), os.urandom(32))
            if hashed
            else PlainSecret(os.urandom(16))
        )

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[bytes | tuple[()]]:
        """Fires with the username, UTF-8 encoded as cred expects, or fails."""
        avatar_id: bytes = credentials.username
        name = avatar_id.decode("utf-8", "replace")
        password: bytes = credentials.password
        secret = self.users.get(name)
        known = secret is not None
        if secret is None:
            secret = self._decoy
        if not secret.costly:
            return succeed(avatar_id) if secret.verify(password) and known else _refused()
        if len(self._slots.waiting) >= self._max_waiting:
            return fail(LoginBusy())
        d = self._slots.run(
            deferToThreadPool,
            self._reactor,
            self._reactor.getThreadPool(),
            secret.verify,
            password,
        )

        def decide(ok: bool) -> bytes | tuple[()]:
            if ok and known:
                return avatar_id
            raise UnauthorizedLogin()

        return d.addCallback(decide)


def _refused() -> Deferred[bytes | tuple[()]]:
    return fail(UnauthorizedLogin())


# --- the login guard ------------------------------------------------------------


@attrs.define(slots=True)
class _Attempts:
    failures: int = 0
    #: Password checks started and not yet finished.
    checking: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0
    #: When it was last used: the table is in this order.
    touched: float = 0.0


@implementer(ILoginGuard)
class LoginGuard:
    """
    Blocks a username from an address after too many failed logins.

    Failures are counted per (username, address); unknown usernames are
    counted and blocked exactly like known ones, so the guard tells an
    attacker nothing.  A success clears the count; failures older than the
    block time are forgotten.

    Checks still running count against the limit too: with hashed passwords
    a check takes a while, and without this twenty parallel connections
    could all be guessing before the first failure was counted.  So at most
    C{max_attempts} guesses per user and address happen per block period.

    The table holds at most C{max_entries}, the oldest dropped first, so
    guessing with random names cannot grow it without bound.
    """

    def __init__(
        self,
        clock: IReactorTime,
        max_attempts: int = 3,
        block_time: float = 60.0,
        max_entries: int = 100_000,
    ) -> None:
        self._clock = clock
        self.max_attempts = max_attempts
        self.block_time = block_time
        self._max_entries = max_entries
        self._attempts: dict[tuple[str, str], _Attempts] = {}

    def blocked_for(self, name: str, host: str) -> float:
        """Seconds left in the block of C{name} from C{host}, or 0."""
        record = self._attempts.get((name, host))
        if record is None:
            return 0.0
        return max(0.0, record.blocked_until - self._clock.seconds())

    def _record(self, name: str, host: str) -> _Attempts:
        """The record for (name, host), moved to the newest end of the table."""
        key = (name, host)
        now = self._clock.seconds()
        record = self._attempts.pop(key, None)
        if record is None:
            record = _Attempts()
        elif record.failures and now - record.last_failure >= self.block_time:
            record.failures = 0
        record.touched = now
        self._attempts[key] = record
        self._forget_stale(now)
        while len(self._attempts) > self._max_entries:
            del self._attempts[next(iter(self._attempts))]
        return record

    def _forget_stale(self, now: float) -> None:
        """
        Drop the oldest records that no longer matter (no check running, no
        block in force, failures forgotten), two per use of the table: an
        attack that has ended leaves nothing behind, at no cost per login.
        """
        for _ in range(2):
            if not self._attempts:
                return
            key = next(iter(self._attempts))
            oldest = self._attempts[key]
            if oldest.checking or oldest.blocked_until > now or now - oldest.touched < self.block_time:
                return
            del self._attempts[key]

    def begin(self, name: str, host: str) -> Deferred[bool]:
        """
        A password for C{name} from C{host} is about to be checked.  Say
        whether that may happen now, and if so count it as in progress;
        every C{begin} that gives True is ended by exactly one of
        C{failed}, C{succeeded} or C{abandoned}.
        """
        return succeed(self.begin_here(name, host))

    def begin_here(self, name: str, host: str) -> bool:
        """L{begin}, answered from this process's own count."""
        record = self._record(name, host)
        if record.failures + record.checking >= self.max_attempts:
            return False
        record.checking += 1
        return True

    def failed(self, name: str, host: str) -> Deferred[float]:
        """A check failed; fires with the seconds of the block it starts, or 0."""
        return succeed(self.failed_here(name, host))

    def failed_here(self, name: str, host: str) -> float:
        """L{failed}, counted in this process alone."""
        now = self._clock.seconds()
        record = self._record(name, host)
        record.checking = max(0, record.checking - 1)
        record.failures += 1
        record.last_failure = now
        if record.failures >= self.max_attempts:
            record.failures = 0
            record.blocked_until = now + self.block_time
        return max(0.0, record.blocked_until - now)

    def succeeded(self, name: str, host: str) -> None:
        """The password was right: forget earlier failures."""
        record = self._record(name, host)
        record.checking = max(0, record.checking - 1)
        record.failures = 0
        if not record.checking:
            del self._attempts[(name, host)]

    def abandoned(self, name: str, host: str) -> None:
        """The check ended without an answer (server busy or broken)."""
        record = self._record(name, host)
        record.checking = max(0, record.checking - 1)

    def __len__(self) -> int:
        return len(self._attempts)


# --- resume tokens --------------------------------------------------------------


class IResumeToken(ICredentials):
    """Credentials: a token issued at an earlier login, instead of a password."""

    token = Attribute("The token, as text.")


@implementer(IResumeToken)
@attrs.frozen
class ResumeToken:
    token: str = attrs.field(repr=False)


class TokenRefused(UnauthorizedLogin):
    """A resume token that cannot be used; C{reason} is C{expired} or C{reused}."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class ResumeTokens:
    """
    Single-use tokens that let a browser that lost its connection log in
    again without the password.  Only their SHA-256 is stored, in the store,
    so they survive a restart of the server; each expires after C{lifetime}
    seconds, and issuing a new one for a user revokes the older ones.
    """

    def __init__(
        self, store: TokenStore, clock: IReactorTime, lifetime: float = 900.0, idle_lifetime: float = 86400.0
    ) -> None:
        self.store = store
        self.clock = clock
        self.lifetime = lifetime
        #: The lifetime of the token given to a page whose session ended for
        #: being idle: its reader may be back after lunch, or the next day.
        self.idle_lifetime = idle_lifetime

    def issue(self, name: str, lifetime: float | None = None) -> Deferred[tuple[str, float]]:
        """A new token for C{name}, with when it expires, once it is stored."""
        token = secrets.token_urlsafe(32)
        expires = self.clock.seconds() + (self.lifetime if lifetime is None else lifetime)
        saved = self.store.save_token(name, token_digest(token), expires, self.clock.seconds())
        return saved.addCallback(lambda _: (token, expires))

    def use(self, token: str) -> Deferred[tuple[str | None, str]]:
        return self.store.use_token(token_digest(token), self.clock.seconds())

    def revoke(self, name: str) -> Deferred[None]:
        """
        Every token of C{name} stops working: the session they resume has
        ended for real (a logout, a new password, a user removed).
        """
        return self.store.revoke_tokens(name)


class TokenStore(Protocol):
    """The part of L{chat.server.interfaces.IStore} that keeps tokens."""

    def save_token(self, name: str, digest: str, expires: float, now: float) -> Deferred[None]: ...

    def revoke_tokens(self, name: str) -> Deferred[None]: ...

    def use_token(self, digest: str, now: float) -> Deferred[tuple[str | None, str]]: ...


@implementer(ICredentialsChecker)
class TokenChecker:
    """Checks resume tokens; each can be used once."""

    credentialInterfaces = (IResumeToken,)

    def __init__(self, tokens: ResumeTokens) -> None:
        self.tokens = tokens

    def requestAvatarId(self, credentials: IResumeToken) -> Deferred[bytes | tuple[()]]:
        def decide(outcome: tuple[str | None, str]) -> bytes:
            name, status = outcome
            if status != "ok" or name is None:
                raise TokenRefused(status)
            return name.encode("utf-8")

        return self.tokens.use(credentials.token).addCallback(decide)
