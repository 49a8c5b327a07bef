"""Progress of reading a dataset's rows: a line every so many rows or seconds, and one when done.

Building a video dataset opens every row's video header (and tokenizes its prompt) before training starts; on
hundreds of thousands of rows that takes minutes, which without a line looks like a hang, in a terminal or a Slurm
log alike.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class RowProgress:
    """Counts rows read and kept; prints ``dataset NAME: R rows read, K kept (S s)`` every ``every_rows`` rows or
    ``every_s`` seconds, whichever comes first, and a last line from :meth:`finish`."""

    def __init__(self, name: str, every_rows: int = 5000, every_s: float = 30.0,
                 now: Callable[[], float] = time.monotonic, stream: TextIO | None = None) -> None:
        self.name, self.every_rows, self.every_s, self.now, self.stream = name, every_rows, every_s, now, stream
        self.read = self.kept = 0
        self.start = self.last_line = now()

    def count(self, kept: bool) -> bool:
        """Count one row; returns ``kept`` so it can sit in a filter."""
        self.read += 1
        self.kept += kept
        if self.read % self.every_rows == 0 or self.now() - self.last_line >= self.every_s:
            self._print("")
        return kept

    def finish(self) -> None:
        self._print(", done")

    def _print(self, suffix: str) -> None:
        self.last_line = self.now()
        print(f"dataset {self.name}: {self.read} rows read, {self.kept} kept ({self.last_line - self.start:.1f} s)"
              f"{suffix}", file=self.stream or sys.stdout, flush=True)
