"""
``python -m benchmarks stacks FILE``: what the reactor thread spent its time
on, from a profile in collapsed-stack form (``py-spy record --format raw``).

A flame graph shows the shape; this prints the numbers a report needs: the
functions with the most samples of their own ("self") and in their subtree
("inclusive"), as percentages of the reactor thread's samples.  Other
threads (the store's writer, the password-hashing pool) are counted apart,
since they do not delay the reactor except by taking the GIL or a core.

    py-spy record --pid PID --duration 10 --rate 200 --format raw -o fanout.txt
    python -m benchmarks stacks fanout.txt
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence

import attrs

#: A frame of the reactor's own loop: only the thread running it has this.
REACTOR_MARK = "mainLoop"
_LINE = re.compile(r":\d+\)$")
#: Frames every sample of the reactor thread has; inclusive figures skip them.
_PLUMBING = (
    "mainLoop",
    "ReactorBase.run",
    "doPoll",
    "_doReadOrWrite",
    "callWithLogger",
    "callWithContext",
    "runReactorWithLogging",
    "ApplicationRunner",
    "postApplication",
    "runApp",
    "<module>",
    "_run_code",
    "_run_module_as_main",
    "run (twisted",
    "main (benchmarks",
)


def frame_name(frame: str) -> str:
    """``f (file.py:12)`` without its line number, so a function's lines add up."""
    return _LINE.sub(")", frame)


@attrs.define
class Profile:
    samples: int = 0
    reactor: int = 0
    own: Counter[str] = attrs.field(factory=Counter)
    subtree: Counter[str] = attrs.field(factory=Counter)
    others: Counter[str] = attrs.field(factory=Counter)

    def add(self, stack: str, count: int) -> None:
        self.samples += count
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            return
        if not any(REACTOR_MARK in f for f in frames):
            self.others[frames[-1]] += count
            return
        self.reactor += count
        self.own[frames[-1]] += count
        for f in set(frames):
            self.subtree[f] += count

    def percent(self, n: int) -> float:
        return 100 * n / self.reactor if self.reactor else 0.0


def parse(lines: Iterable[str]) -> Profile:
    profile = Profile()
    for raw in lines:
        line = raw.rstrip("\n")
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            profile.add(stack, int(count))
    return profile


def report(profile: Profile, top: int = 20) -> str:
    out = [
        f"{profile.samples} samples, {profile.reactor} on the reactor thread "
        f"({100 * profile.reactor / max(1, profile.samples):.0f}%); "
        "percentages are of the reactor thread's samples",
        "",
        "self:",
    ]
    out += [f"  {profile.percent(n):5.1f}%  {f}" for f, n in profile.own.most_common(top)]
    out += ["", "inclusive:"]
    shown = [(f, n) for f, n in profile.subtree.most_common() if not any(p in f for p in _PLUMBING)]
    out += [f"  {profile.percent(n):5.1f}%  {f}" for f, n in shown[:top]]
    if profile.others:
        out += ["", "other threads (share of all samples):"]
        out += [
            f"  {100 * n / profile.samples:5.1f}%  {f}" for f, n in profile.others.most_common(min(top, 8))
        ]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks stacks", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="collapsed stacks: 'frame;frame;... COUNT' per line")
    parser.add_argument("--top", type=int, default=20)
    options = parser.parse_args(argv)
    with open(options.path, encoding="utf-8", errors="replace") as f:
        profile = parse(f)
    sys.stdout.write(report(profile, options.top))
    return 0
