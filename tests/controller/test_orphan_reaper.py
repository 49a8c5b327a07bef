"""A driver that started its own Ray instance and is killed with SIGKILL leaves no process behind for long.

Without the reaper, Ray's DashboardAgent and RuntimeEnvAgent outlive such a driver by about 63 s (they try to tell
the dead GCS that the raylet died, with a 60 s timeout); the issue's bound is 30 s.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from live_processes import alive

REPO = Path(__file__).resolve().parents[2]
DRIVER = """
import time
from longrl.controller.resource_pool import start_local_ray
start_local_ray(1)
print("ready", flush=True)
time.sleep(600)
"""


def test_no_process_of_a_killed_drivers_ray_outlives_it_by_more_than_seconds():
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert driver.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the raylet starts its agents after ray.init returns
            children = psutil.Process(driver.pid).children(recursive=True)
            names = {child.name() for child in children}
            if {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names:
                break
            time.sleep(0.2)
        assert {"raylet", "gcs_server", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, names
        assert any("orphan_reaper.py" in " ".join(child.cmdline()) for child in children)
        pids = {child.pid for child in children}
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        killed_at, deadline = time.monotonic(), time.monotonic() + 30
        while alive(pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(pids), [psutil.Process(pid).cmdline() for pid in alive(pids)]
        assert time.monotonic() - killed_at < 15
    finally:
        driver.kill()
