"""
    python -m benchmarks load --port P --users FILE --scenario S [...]
    python -m benchmarks run [--quick] [--repeat 3] [--chatload PATH] [--scenarios ...]
    python -m benchmarks cluster [--quick] [--repeat 3] [--n 1000] [--output FILE] [--json FILE]
    python -m benchmarks fuzz [--quick] [--tcp 100000] [--ws 20000] [--seed 1] [--replay tcp:N,ws:M]
    python -m benchmarks users --n N FILE [--hashed]
    python -m benchmarks stacks PROFILE     (py-spy's --format raw)
    python -m benchmarks hotpath [--messages 100000] [--pairs 50] [--repeat 5]

Machine-readable output (JSON lines, the results table) goes to stdout;
progress and problems are logged to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)


def _log_to_stderr(verbose: bool) -> None:
    predicate = LogLevelFilterPredicate(LogLevel.info if verbose else LogLevel.warn)
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def _users(argv: Sequence[str]) -> int:
    from benchmarks import users

    parser = argparse.ArgumentParser(prog="python -m benchmarks users", description="Write a users file.")
    parser.add_argument("path")
    parser.add_argument("--n", type=int, required=True, help="how many users (user0001 pw0001, ...)")
    parser.add_argument("--hashed", action="store_true", help="scrypt entries instead of plain text")
    parser.add_argument("--log-n", type=int, default=14, help="scrypt cost of hashed entries")
    options = parser.parse_args(argv)
    users.write(options.path, options.n, options.hashed, options.log_n)
    return 0


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in ("load", "run", "cluster", "fuzz", "users", "stacks", "hotpath"):
        sys.stderr.write(__doc__ or "")
        return 2
    command, rest = argv[0], list(argv[1:])
    if command == "users":
        return _users(rest)
    if command == "stacks":
        from benchmarks import stacks

        return stacks.main(rest)
    if command == "hotpath":
        from benchmarks import hotpath

        return hotpath.main(rest)
    if command == "load":
        from benchmarks import loadgen

        _log_to_stderr(verbose=False)
        return loadgen.main(rest)
    _log_to_stderr(verbose=True)
    if command == "cluster":
        from benchmarks import cluster

        return cluster.main(rest)
    if command == "fuzz":
        from benchmarks import fuzz

        return fuzz.main(rest)
    from benchmarks import runner

    return runner.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
