"""
How many deliveries of each sender's messages have arrived, across worker
processes.

A sender in window mode may have W messages not yet delivered to everybody,
which it can only know if it hears about deliveries to receivers in other
processes.  Each process owns one row of a shared memory-mapped file of
64-bit counters (one column per connection) and publishes its own counts
there; a sender's process adds up the column.  Aligned 64-bit stores are
atomic on the machines this runs on, and each row has a single writer, so
no lock is needed: a reader sees a count that is at worst slightly old.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable


class Ledger:
    """
    Delivery counts per sender.  C{local} is this process's row, updated in
    place by the hot path; C{publish} copies chosen entries to shared memory.
    """

    def __init__(self, columns: int, path: str | None = None, row: int = 0, rows: int = 1) -> None:
        self.columns = columns
        self.row = row
        self.rows = rows
        self.local = [0] * columns
        self._view: memoryview | None = None
        self._map: mmap.mmap | None = None
        if path is not None and rows > 1:
            size = columns * rows * 8
            fd = os.open(path, os.O_RDWR)
            try:
                if os.fstat(fd).st_size < size:
                    raise ValueError(f"{path} is smaller than {size} bytes")
                self._map = mmap.mmap(fd, size)
            finally:
                os.close(fd)
            self._view = memoryview(self._map).cast("Q")

    @staticmethod
    def create(path: str, columns: int, rows: int) -> None:
        """Make the zeroed shared file for C{rows} processes."""
        with open(path, "wb") as f:
            f.truncate(columns * rows * 8)

    def publish(self, columns: Iterable[int]) -> None:
        """Make this process's counts for C{columns} visible to the others."""
        view = self._view
        if view is None:
            return
        base = self.row * self.columns
        local = self.local
        for c in columns:
            view[base + c] = local[c]

    def total(self, column: int) -> int:
        """Deliveries of C{column}'s messages seen by every process."""
        view = self._view
        if view is None:
            return self.local[column]
        total = self.local[column]
        columns = self.columns
        for r in range(self.rows):
            if r != self.row:
                total += view[r * columns + column]
        return total

    def close(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._map is not None:
            self._map.close()
            self._map = None
