"""The multi-node launchers for real on one machine: two Ray nodes started by the launchers' own bootstrap
(``longrl.controller.cluster``), one GRPO step of the tiny text model over both, and the cluster torn down after.

Each node offers one CPU and the job asks for ``trainer.nnodes=2 x trainer.n_gpus_per_node=1`` ranks (one CPU each),
so its resource pool can only be placed across both nodes: the step completing is the job using the combined
cluster. Slurm is not installed here (and cannot be), so ``srun_multi_nodes.sh`` runs with stand-ins for ``scontrol``
(two host names) and ``srun`` (runs the step's command on this machine, ignoring the node options): what is tested
is the script's own logic — head first, then workers, the wait, the job, the teardown — with real Ray nodes.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROWS = [{"problem": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in ((2, 3), (4, 4), (1, 6), (5, 2))]
TINY = ["trainer.max_steps=1", "data.rollout_batch_size=2", "worker.actor.global_batch_size=2", "worker.rollout.n=2",
        "worker.actor.micro_batch_size_per_device_for_update=2",
        "worker.actor.micro_batch_size_per_device_for_experience=2", "data.max_response_length=8",
        "trainer.logger=[file]", "trainer.save_freq=-1", "trainer.val_before_train=false", "trainer.val_freq=-1"]
SRUN = """#!/usr/bin/env bash
while [ $# -gt 0 ]; do case "$1" in -w) shift 2 ;; -*) shift ;; *) break ;; esac; done
exec "$@"
"""
SCONTROL = """#!/usr/bin/env bash
printf 'node-a\\nnode-b\\n'
"""

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_processes(port: int) -> list[str]:
    """Command lines of this cluster's GCS server (it carries the port) still running."""
    found = subprocess.run(["pgrep", "-fa", f"gcs_server.*{port}"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if "pgrep" not in line]


def _env(tmp_path: Path, model_dir: Path, port: int) -> dict[str, str]:
    rows = tmp_path / "math.jsonl"
    rows.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return {**os.environ, "PYTHON": sys.executable, "MODEL_PATH": str(model_dir), "TRAIN_FILES": str(rows),
            "VAL_FILES": str(rows), "RAY_PORT": str(port), "GPUS_PER_NODE": "1", "CPU_ONLY": "1",
            "CPUS_PER_NODE": "1", "WAIT_TIMEOUT": "120", "RAY_START_ARGS": "--object-store-memory=200000000"}


def _assert_one_step_over_two_nodes(done: subprocess.CompletedProcess, tmp_path: Path, port: int) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 node(s) ready" in done.stdout and "'CPU': 2.0" in done.stdout
    steps = [json.loads(line) for line in
             (tmp_path / "outputs/logs/longrl/qwen2_5_3b_math_grpo/metrics.jsonl").read_text().splitlines()]
    assert [step["step"] for step in steps] == [1] and "actor/pg_loss" in steps[0]
    assert _ray_processes(port) == []


def test_train_multi_nodes_runs_a_step_on_two_hand_started_nodes(tiny_model_dir, tmp_path):
    port = _free_port()
    env = {**_env(tmp_path, tiny_model_dir("qwen2"), port), "NNODES": "2"}
    worker = subprocess.Popen(["bash", str(REPO / "scripts/train_multi_nodes.sh")], cwd=tmp_path,
                              env={**env, "NODE_RANK": "1", "HEAD_ADDR": "127.0.0.1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        done = subprocess.run(["bash", str(REPO / "scripts/train_multi_nodes.sh"),
                               str(REPO / "examples/qwen2_5_3b_math_grpo.sh"), *TINY], cwd=tmp_path,
                              env={**env, "NODE_RANK": "0"}, capture_output=True, text=True, timeout=600)
        _assert_one_step_over_two_nodes(done, tmp_path, port)
        assert worker.wait(timeout=60) is not None  # the worker node's Ray ended with the head's cluster
    finally:
        worker.kill()


def test_srun_multi_nodes_runs_a_step_and_tears_down_on_failure(tiny_model_dir, tmp_path):
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    port = _free_port()
    env = {**_env(tmp_path, tiny_model_dir("qwen2"), port), "PATH": f"{shims}:{os.environ['PATH']}",
           "SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "node-[a-b]"}
    done = subprocess.run(["bash", str(REPO / "scripts/srun_multi_nodes.sh"),
                           str(REPO / "examples/qwen2_5_3b_math_grpo.sh"), "2", *TINY], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    _assert_one_step_over_two_nodes(done, tmp_path, port)

    failing = tmp_path / "fails.sh"
    failing.write_text('echo "job sees RAY_ADDRESS=$RAY_ADDRESS NNODES=$NNODES args: $*"; exit 7\n')
    started = time.monotonic()
    done = subprocess.run(["bash", str(REPO / "scripts/srun_multi_nodes.sh"), str(failing), "2", "x=1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 7, done.stderr[-3000:]
    assert re.search(rf"job sees RAY_ADDRESS=\S+:{port} NNODES=2 args: x=1 trainer\.nnodes=2 "
                     r"trainer\.n_gpus_per_node=1", done.stdout), done.stdout[-2000:]
    assert _ray_processes(port) == [], f"cluster left running {time.monotonic() - started:.0f}s after a failed job"
