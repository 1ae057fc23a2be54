"""
Log observers for twistd's C{--logger}: JSON lines or text, to standard
output or to a file that is rotated at a size with a bounded number of old
files kept.  twistd's own C{--logfile} rotates at 1 MB and keeps every old
file, so a server under attack, or simply busy for months, fills its disk.

    CHAT_LOG_FILE=/var/log/chat/chat.log twistd --logger chat.server.logs.json -n chat ...

The settings are environment variables, since twistd calls a C{--logger}
factory with no arguments:

- C{CHAT_LOG_FILE}: the file; standard output if unset or C{-}.
- C{CHAT_LOG_SIZE}: bytes after which the file is rotated (10 MB).
- C{CHAT_LOG_KEEP}: how many rotated files are kept (10): C{chat.log.1} is
  the newest, older ones are deleted.

With a file, SIGUSR1 rotates it at once (for logrotate's C{postrotate}).
Under systemd, logging to standard output hands rotation to the journal.
"""

from __future__ import annotations

import os
import sys
from typing import IO

from twisted.logger import ILogObserver, jsonFileLogObserver, textFileLogObserver
from twisted.python.logfile import LogFile

DEFAULT_SIZE = 10_000_000
DEFAULT_KEEP = 10

#: The file being logged to, if a factory here opened one: what SIGUSR1 rotates.
current: LogFile | None = None


def json() -> ILogObserver:
    """One JSON object per line, every field of every event kept."""
    return jsonFileLogObserver(_output(), recordSeparator="")


def text() -> ILogObserver:
    """The same lines as twistd writes, to a bounded set of files."""
    return textFileLogObserver(_output())


def rotate() -> bool:
    """Rotate the file a factory here opened; say whether there was one."""
    if current is None:
        return False
    current.rotate()
    return True


def _output(environ: dict[str, str] | None = None) -> IO[str]:
    global current
    env = os.environ if environ is None else environ
    path = env.get("CHAT_LOG_FILE", "-")
    if path in ("", "-"):
        return sys.stdout
    size = _whole(env, "CHAT_LOG_SIZE", DEFAULT_SIZE)
    keep = _whole(env, "CHAT_LOG_KEEP", DEFAULT_KEEP)
    path = os.path.abspath(path)
    try:
        current = LogFile(
            os.path.basename(path),
            os.path.dirname(path),
            rotateLength=size,
            maxRotatedFiles=keep,
            defaultMode=0o640,
        )
    except OSError as e:
        raise SystemExit(f"twistd chat: cannot open the log file {path}: {e.strerror}") from None
    return current  # type: ignore[return-value]


def _whole(env: os._Environ[str] | dict[str, str], name: str, default: int) -> int:
    text = env.get(name, "")
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise SystemExit(f"twistd chat: {name} must be a whole number of at least 1, not {text!r}")
    return int(text)
