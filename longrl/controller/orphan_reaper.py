"""Take a driver's descendants down with it, ``kill -9`` included: ``python longrl/controller/orphan_reaper.py PID``.

When the driver started its own Ray instance, Ray's reaper ends the GCS and the raylet with the driver, but the
raylet's agents (DashboardAgent, RuntimeEnvAgent) then spend a minute reporting the raylet's unexpected death to the
dead GCS (a 60 s timeout inside Ray, not configurable) before they exit, holding ports and memory after a trainer that
Slurm or the OOM killer ended. This small process, started beside such a driver, remembers the driver's descendants
while it lives and kills whichever of them are still there shortly after it is gone. It runs in a session of its own
so a signal to the driver's process group does not end it first, and as a plain script (psutil only: importing the
longrl package would take seconds, a window in which a killed driver's descendants would go unseen).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

__all__ = ["reap_after", "start_orphan_reaper"]

POLL_S = 0.5
# Time for Ray's own reaper and the processes' own parent checks to end them cleanly first.
GRACE_S = 2.0


def start_orphan_reaper() -> subprocess.Popen:
    """Start the reaper for this process and return once it has seen this process's descendants (it exits on its
    own once this process is gone)."""
    # -I: the script's folder (longrl/controller) is not put on sys.path, where its modules would shadow others
    reaper = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), str(os.getpid())],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, start_new_session=True)
    reaper.stdout.readline()  # "watching", once the first look at the descendants is taken
    return reaper


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def reap_after(driver_pid: int, poll_s: float = POLL_S, grace_s: float = GRACE_S) -> list[int]:
    """Wait for ``driver_pid`` to end, then kill its remembered descendants still alive; returns their pids.

    A descendant is remembered with its start time, so a pid the system gave to an unrelated process meanwhile is
    left alone. "watching" is printed once the first look is taken."""
    remembered: dict[int, float] = {}
    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return []
    announced = False
    while not _gone(driver):
        try:
            remembered.update({child.pid: child.create_time() for child in driver.children(recursive=True)})
        except psutil.Error:
            pass  # the driver ended while it was read
        if not announced:
            print("watching", flush=True)
            announced = True
        time.sleep(poll_s)
    time.sleep(grace_s)
    killed = []
    for pid, started in remembered.items():
        try:
            process = psutil.Process(pid)
            if pid != os.getpid() and process.create_time() == started and not _gone(process):
                process.kill()
                killed.append(pid)
        except psutil.Error:
            pass
    return killed


if __name__ == "__main__":
    reap_after(int(sys.argv[1]))
