"""
Users files for load tests, in the server's format and chatload's naming:
``user0001 pw0001`` and so on, so either generator can use the other's file.

Hashed files (scrypt, as ``python -m chat.passwd`` writes them) cost tens of
milliseconds per user to make at the default cost, so they are meant to be
small: a login storm needs as many users as logins in flight, not thousands.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from chat.server.auth import ScryptSecret, format_user_line


def name(i: int) -> str:
    return f"user{i:04d}"


def password(i: int) -> str:
    return f"pw{i:04d}"


def plain_lines(n: int) -> Iterator[str]:
    for i in range(1, n + 1):
        yield f"{name(i)} {password(i)}"


def hashed_lines(n: int, log_n: int = 14) -> Iterator[str]:
    for i in range(1, n + 1):
        secret = ScryptSecret.create(password(i).encode("ascii"), log_n=log_n)
        yield format_user_line(name(i), secret)


def write(path: str, n: int, hashed: bool = False, log_n: int = 14) -> None:
    """Write a users file of C{n} users, readable only by its owner as the server prefers."""
    lines = hashed_lines(n, log_n) if hashed else plain_lines(n)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, path)


def read(path: str) -> list[tuple[str, str]]:
    """
    (name, password) pairs of a users file.  For a hashed file the password
    column is the hash, which is useless to a client: passwords of hashed
    users are the generated ones, so they are derived from the name.
    """
    pairs: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            user = parts[0]
            secret = parts[1] if len(parts) > 1 else ""
            if secret.startswith(ScryptSecret.PREFIX):
                if not (user.startswith("user") and user[4:].isdigit()):
                    raise ValueError(f"{path}: cannot know the password of hashed user {user!r}")
                secret = password(int(user[4:]))
            pairs.append((user, secret))
    return pairs
