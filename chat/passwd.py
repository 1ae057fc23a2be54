"""
``python -m chat.passwd FILE USER``: add a user, or change their password,
storing an scrypt hash instead of the password.

The file is rewritten atomically (a temporary file in the same directory,
flushed to disk, then renamed over the original), so a crash or a full
disk leaves either the old file or the new one, never half of one; the
file keeps its permissions, and a new file is readable by its owner only.
Other lines, comments included, are kept as they were.

A password that breaks a rule is refused as soon as it is typed, before the
second entry, and asked for again; so is a second entry that differs from
the first.  After L{MAX_TRIES} bad tries the command gives up, changing
nothing.  No message ever quotes what was typed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile
from collections.abc import Callable, Sequence

from chat.server.auth import ScryptSecret, UsersFileError, format_user_line, parse_users, valid_name

MIN_LENGTH = 8
MAX_TRIES = 3


def password_problem(password: str) -> str | None:
    """
    What is wrong with C{password} on its own, or None if it can be used.

    Checked on the first entry, so that nobody types a password twice only to
    be told it was never acceptable.  The answer describes the rule, never
    the password, since it is printed.
    """
    if len(password) < MIN_LENGTH:
        return f"use at least {MIN_LENGTH} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in password) or password != password.strip():
        return "no control characters or leading/trailing spaces"
    return None


def read_password(user: str, ask: Callable[[str], str]) -> str | None:
    """
    Ask for a new password and its confirmation until both are good.

    Each bad try (a password that breaks a rule, or a confirmation that
    differs) is reported in one line on stderr and asked again, up to
    L{MAX_TRIES} tries in all: a typo costs one more try rather than a
    rerun, while a script feeding wrong input still ends, with a non-zero
    exit, instead of looping.

    @return: the password, or None after L{MAX_TRIES} bad tries.
    @raise EOFError: the input ended.
    @raise KeyboardInterrupt: the user pressed Ctrl-C.
    """
    for attempt in range(1, MAX_TRIES + 1):
        password = ask(f"New password for {user}: ")
        problem = password_problem(password)
        if problem is None:
            if ask("Again: ") == password:
                return password
            problem = "the passwords differ"
        print(f"chat.passwd: {problem}{'; try again' if attempt < MAX_TRIES else ''}", file=sys.stderr)
    print(f"chat.passwd: no usable password in {MAX_TRIES} tries; nothing changed", file=sys.stderr)
    return None


def set_password(path: str, name: str, password: str) -> bool:
    """
    Write C{name}'s hashed password into the users file at C{path}.

    @return: True if the user was added, False if an existing entry changed.
    @raise UsersFileError: the file exists but is not a valid users file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        text, mode = "", 0o600
    except UnicodeDecodeError:
        raise UsersFileError(f"users file {path!r} is not UTF-8 text") from None
    if text.strip():
        parse_users(text, path)  # refuse to rewrite a file we could not read back

    entry = format_user_line(name, ScryptSecret.create(password.encode("utf-8")))
    lines = text.splitlines()
    added = True
    for i, line in enumerate(lines):
        parts = line.split(None, 1)
        if parts and not line.lstrip().startswith("#") and parts[0] == name:
            lines[i] = entry
            added = False
            break
    else:
        lines.append(entry)

    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".users-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return added


def main(
    argv: Sequence[str] | None = None,
    ask: Callable[[str], str] = getpass.getpass,
) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chat.passwd",
        description="Add a chat user, or change a password, storing a scrypt hash.",
    )
    parser.add_argument("file", help="the users file (created if missing)")
    parser.add_argument("user", help="the username")
    args = parser.parse_args(argv)

    if not valid_name(args.user):
        print("chat.passwd: a username is 1-64 printable characters without spaces", file=sys.stderr)
        return 2
    try:
        password = read_password(args.user, ask)
    except (EOFError, KeyboardInterrupt):
        print("\nchat.passwd: nothing changed", file=sys.stderr)
        return 1
    if password is None:
        return 1
    try:
        added = set_password(args.file, args.user, password)
    except UsersFileError as e:
        print(f"chat.passwd: {e}; nothing changed", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"chat.passwd: cannot write {args.file!r}: {e.strerror}; nothing changed", file=sys.stderr)
        return 1
    print(f"{'Added' if added else 'Changed the password of'} {args.user} in {args.file}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
