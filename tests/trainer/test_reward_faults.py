"""Reward calls that never return, and a trainer killed with SIGKILL: bounded by worker.reward.timeout_s, and no
reward process outlives its trainer. Real spawned worker processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from live_processes import alive

from longrl.rewards import RewardFunctionError, load_reward_function
from longrl.trainer.rewarding import ParallelReward

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

STALLS = '''
import re
import time


def compute_score(reward_input):
    if reward_input["ground_truth"] == "sleeps":
        time.sleep(3600)  # a request that never answers
    if reward_input["ground_truth"] == "native":
        re.match(r"(a+)+$", "a" * 64 + "b")  # catastrophic backtracking: C code that never checks for signals
    return {"overall": float(len(reward_input["response"]))}
'''


def sample(truth: str, response: str = "ok") -> dict:
    return {"response": response, "response_length": 1, "ground_truth": truth}


@pytest.fixture(scope="module")
def stalling(tmp_path_factory):
    path = tmp_path_factory.mktemp("stalls") / "stalls.py"
    path.write_text(STALLS)
    reward = ParallelReward(load_reward_function(str(path), "sequential", {}, timeout_s=1.0), num_workers=1)
    yield reward
    reward.close()


def test_a_call_past_the_time_out_fails_naming_the_function_and_sample(stalling):
    assert stalling([sample("a", "xyz")]) == [{"overall": 3.0}]  # the process has started (not timed)
    start = time.monotonic()
    with pytest.raises(RewardFunctionError, match=r"stalls\.py:compute_score raised RewardTimeout: no result within "
                                                   r"worker\.reward\.timeout_s=1 s\n  on sample 2: .*'sleeps'"):
        stalling([sample("a"), sample("b"), sample("sleeps"), sample("c")])
    assert time.monotonic() - start < 1.0 + 2.0  # the limit, plus the other samples' and the IPC's time
    assert stalling([sample("a", "xyz"), sample("b")]) == [{"overall": 3.0}, {"overall": 2.0}]  # the same process


def test_a_call_deaf_to_the_time_out_gets_its_processes_restarted(stalling):
    before = {process.pid for process in stalling.pool._processes.values()}
    start = time.monotonic()
    with pytest.raises(RewardFunctionError, match=r"stalls\.py:compute_score did not return on samples 0-1 within "
                                                   r"3 s \(2 call\(s\) .*restarted"):
        stalling([sample("a"), sample("native")])
    assert 3.0 <= time.monotonic() - start < 3.0 + 2.0  # the backstop: 1 s per call, plus one
    assert not alive(before)
    assert stalling([sample("a", "xyz")]) == [{"overall": 3.0}]


DRIVER = '''
import sys
from longrl.rewards import load_reward_function
from longrl.trainer.rewarding import ParallelReward

reward = ParallelReward(load_reward_function("longrl.rewards.r1v:compute_score", "sequential", {}), num_workers=1)
print("ready", flush=True)
sys.stdin.read()  # until the test kills us
'''


def test_no_reward_process_outlives_a_killed_trainer():
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert driver.stdout.readline().strip() == "ready"
        children = psutil.Process(driver.pid).children(recursive=True)
        kinds = sorted("resource_tracker" if "resource_tracker" in " ".join(c.cmdline()) else "worker"
                       for c in children)
        assert kinds == ["resource_tracker", "worker"]
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        pids, deadline = {child.pid for child in children}, time.monotonic() + 30
        while alive(pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(pids), [psutil.Process(pid).cmdline() for pid in alive(pids)]
    finally:
        driver.kill()
