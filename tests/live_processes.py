"""Which processes are still running, for the tests that kill a driver and check what it leaves behind."""

from __future__ import annotations

import psutil


def alive(pids: set[int]) -> set[int]:
    """The ``pids`` that name a running process (zombies, already ended but not yet reaped, do not count)."""
    running = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.add(pid)
        except psutil.NoSuchProcess:
            pass
    return running
