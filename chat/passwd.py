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

On a terminal the password is asked for without echo.  From a pipe the two
entries are read as lines, quietly (no prompts, no warning about echo); with
C{--password-stdin} a provisioning script gives it once, on the first line
of standard input.  Whatever goes wrong is said in one line, never a
traceback.
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


def _password_from_stdin() -> str | None:
    """The first line of standard input, if it is a usable password."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    password = line.rstrip("\r\n")
    problem = password_problem(password)
    if problem is not None:
        print(f"chat.passwd: {problem}; nothing changed", file=sys.stderr)
        return None
    return password


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


def ask_terminal_or_pipe(prompt: str) -> str:
    """
    One entry of the password: without echo on a terminal; from a pipe, the
    next line, without a prompt (nobody reads it) or getpass's warning.
    """
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def main(
    argv: Sequence[str] | None = None,
    ask: Callable[[str], str] = ask_terminal_or_pipe,
) -> int:
    try:
        return _main(argv, ask)
    except Exception as e:  # one line, never a traceback
        print(f"chat.passwd: {type(e).__name__}: {e}; nothing changed", file=sys.stderr)
        return 1


def _main(argv: Sequence[str] | None, ask: Callable[[str], str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chat.passwd",
        description="Add a chat user, or change a password, storing a scrypt hash.",
        epilog=f"A password has at least {MIN_LENGTH} characters, none of them control characters, "
        "and no space at either end.",
    )
    parser.add_argument("file", help="the users file (created if missing)")
    parser.add_argument("user", help="the username")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password once, from the first line of standard input (for scripts)",
    )
    args = parser.parse_args(argv)

    if not valid_name(args.user):
        print(
            "chat.passwd: a username is 1-64 printable characters without spaces or invisible characters",
            file=sys.stderr,
        )
        return 2
    try:
        if args.password_stdin:
            password = _password_from_stdin()
        else:
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
