"""
Percentiles that several processes can add up, and medians of repeated runs.

Latencies are kept in a log-linear histogram (the layout chatload uses): 64
exact buckets, then 64 per power of two, so every value is within 1/128 of
its bucket's midpoint.  A histogram is a dictionary of counts, so worker
processes send theirs as JSON and the coordinator merges them; keeping every
sample would cost megabytes per run at full speed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

_SUB_BITS = 6
_SUB = 1 << _SUB_BITS


def bucket_of(value: int) -> int:
    """The bucket holding C{value} (a non-negative integer, e.g. microseconds)."""
    if value < _SUB:
        return max(value, 0)
    shift = value.bit_length() - 1 - _SUB_BITS
    return (shift + 1) * _SUB + (value >> shift) - _SUB


def bucket_value(index: int) -> int:
    """A representative value of bucket C{index}: its midpoint."""
    octave, offset = divmod(index, _SUB)
    if octave == 0:
        return offset
    shift = octave - 1
    low = (offset + _SUB) << shift
    return low + ((1 << shift) >> 1)


class Histogram:
    """Counts of integer values (microseconds here), mergeable across processes."""

    __slots__ = ("counts", "maximum", "n", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.total = 0
        self.maximum = 0

    def add(self, value: int) -> None:
        index = bucket_of(value)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        self.n += 1
        self.total += value
        if value > self.maximum:
            self.maximum = value

    def merge(self, other: Histogram) -> None:
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count
        self.n += other.n
        self.total += other.total
        self.maximum = max(self.maximum, other.maximum)

    def percentile(self, p: float) -> int:
        """The value at fraction C{p} (0.5 is the median); 0 if empty."""
        if not self.n:
            return 0
        target = max(1, math.ceil(p * self.n))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= target:
                return min(bucket_value(index), self.maximum)
        return self.maximum

    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "counts": {str(k): v for k, v in self.counts.items()},
            "n": self.n,
            "total": self.total,
            "max": self.maximum,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Histogram:
        h = cls()
        h.counts = {int(k): int(v) for k, v in data.get("counts", {}).items()}
        h.n = int(data.get("n", 0))
        h.total = int(data.get("total", 0))
        h.maximum = int(data.get("max", 0))
        return h


def median(values: Iterable[float | None]) -> float | None:
    """The median, or None when no run produced the figure."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return None
    return float(statistics.median(present))


def ratio(ours: float | None, baseline: float | None) -> float | None:
    if ours is None or baseline is None or baseline == 0:
        return None
    return ours / baseline
