"""The multi-node launchers and their bootstrap, ``longrl.controller.cluster``.

The bootstrap alone: the ``ray start`` lines it builds, a wait that returns once every node and GPU joined or gives up
naming how much did, and a teardown that ends one cluster's processes and leaves another's (a machine may be
shared).

The launchers for real on one machine, two Ray nodes started by the launchers themselves through the bootstrap. Each
node offers one CPU and the job asks for ``trainer.nnodes=2 x trainer.n_gpus_per_node=1`` ranks of one CPU, so its
resource pool can only be placed across both nodes. ``train_multi_nodes.sh`` (no stand-ins) runs one GRPO step of the
tiny text model over them and leaves no Ray behind. Slurm is not installed here (and cannot be), so
``srun_multi_nodes.sh`` runs with stand-ins for ``scontrol`` (two host names) and ``srun`` (runs the step's command on
this machine as the node ``-w`` names, and logs it): what is tested is the script's own logic — moving onto the first
node, head there, worker on the other, the wait, the job's address, environment and arguments, the teardown on every
node — with real Ray nodes and a job that fails. The training step is not repeated under the stand-ins: it would test
the trainer again, not the script, and double the runtime.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from longrl.controller import cluster
from longrl.controller.cluster import (ClusterNotReady, _parser, ray_start_command, start_command, stop_cluster,
                                        wait_for_cluster)

REPO = Path(__file__).resolve().parents[2]
CLUSTER = [sys.executable, "-m", "longrl.controller.cluster"]
ROWS = [{"problem": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in ((2, 3), (4, 4), (1, 6), (5, 2))]
TINY = ["trainer.max_steps=1", "data.rollout_batch_size=2", "worker.actor.global_batch_size=2", "worker.rollout.n=2",
        "worker.actor.micro_batch_size_per_device_for_update=2",
        "worker.actor.micro_batch_size_per_device_for_experience=2", "data.max_response_length=8",
        "trainer.logger=[file]", "trainer.save_freq=-1", "trainer.val_before_train=false", "trainer.val_freq=-1"]
SRUN = """#!/usr/bin/env bash
# Stands in for srun: logs the step, then runs its command here as the node -w names (SLURMD_NODENAME, as srun sets).
node=node-a options=()
while [ $# -gt 0 ]; do case "$1" in -w) node=$2; shift 2 ;; -*) options+=("$1"); shift ;; *) break ;; esac; done
echo "${node}|${options[*]}|$*" >> "${SRUN_LOG}"
SLURMD_NODENAME=${node} exec "$@"
"""
SCONTROL = """#!/usr/bin/env bash
[ "$*" = "show hostnames node-[a-b]" ] && printf 'node-a\\nnode-b\\n'
"""
# The job of the failure tests: it shows what it was given and sees, records the cluster's processes, and fails.
PROBE = """echo "job: RAY_ADDRESS=$RAY_ADDRESS NNODES=$NNODES N_GPUS_PER_NODE=$N_GPUS_PER_NODE args: $*"
"$PYTHON" -c 'import ray; ray.init(); print("job sees", sum(n["Alive"] for n in ray.nodes()), "node(s) and",
ray.cluster_resources()["CPU"], "CPU(s)")'
for pid in $(pgrep -f -- "--(gcs-address=[^ ]*:$RAY_PORT|gcs_server_port=$RAY_PORT)( |\\$)"); do
    echo "$pid"; pgrep -P "$pid"
done > "$PIDS"
exit 7
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def naming_port(port: int) -> list[str]:
    """This machine's processes whose command line names the cluster at ``port`` (GCS server, raylets, monitors)."""
    found = subprocess.run(["pgrep", "-fa", "--", f"--(gcs-address=[^ ]*:{port}|gcs_server_port={port})( |$)"],
                           capture_output=True, text=True).stdout
    return found.splitlines()


@dataclass
class Slot:
    """A port and a short temp dir (Ray's socket paths live under it) for one test's cluster, so it neither meets
    another Ray on the machine nor becomes the cluster their ``ray.init()`` would join."""

    port: int
    temp_dir: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHON": sys.executable, "RAY_PORT": str(self.port), "DASHBOARD_PORT": "",
                "RAY_START_ARGS": f"--temp-dir={self.temp_dir} --object-store-memory=100000000"}


@pytest.fixture
def slot():
    with socket.socket() as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    slot = Slot(port, Path(f"/tmp/lr-{uuid.uuid4().hex[:8]}"))
    yield slot
    if naming_port(port):  # a failed test's cluster
        subprocess.run([*CLUSTER, "stop", "--port", str(port)], capture_output=True)
    shutil.rmtree(slot.temp_dir, ignore_errors=True)


def test_ray_start_command_for_a_head_and_a_worker(monkeypatch):
    monkeypatch.setenv("RAY_START_ARGS", "--temp-dir=/tmp/lr-x --object-store-memory=100")
    head = ray_start_command(None, 6400, 8, cpu_only=False, num_cpus=None, block=True, dashboard_port=8300)
    assert head[:3] == [sys.executable, "-m", "ray.scripts.scripts"]
    assert head[3:] == ["start", "--disable-usage-stats", "--head", "--port=6400", "--dashboard-host=127.0.0.1",
                        "--dashboard-port=8300", "--num-gpus=8", "--block", "--temp-dir=/tmp/lr-x",
                        "--object-store-memory=100"]
    opened = ray_start_command(None, 6400, 8, False, None, False, dashboard_port=8300, dashboard_host="0.0.0.0")
    assert opened[6:9] == ["--port=6400", "--dashboard-host=0.0.0.0", "--dashboard-port=8300"]
    monkeypatch.delenv("RAY_START_ARGS")
    assert ray_start_command(None, 6400, 8, False, None, False)[5:] == ["--head", "--port=6400",
                                                                         "--include-dashboard=false", "--num-gpus=8"]
    worker = ray_start_command("10.0.0.1:6400", 0, 2, cpu_only=True, num_cpus=4, block=False)
    assert worker[3:] == ["start", "--disable-usage-stats", "--address=10.0.0.1:6400", "--num-gpus=0", "--num-cpus=4"]


def test_head_dashboard_listens_on_localhost_unless_opened():
    head = start_command(_parser().parse_args(["head", "--ranks", "2", "--dashboard-port", "8265"]))
    assert "--dashboard-host=127.0.0.1" in head and "--dashboard-port=8265" in head
    opened = start_command(_parser().parse_args(["head", "--ranks", "2", "--dashboard-port", "8265",
                                                 "--dashboard-host", "0.0.0.0"]))
    assert "--dashboard-host=0.0.0.0" in opened
    assert "--include-dashboard=false" in start_command(_parser().parse_args(["head", "--ranks", "2"]))


def test_importing_the_bootstrap_leaves_a_process_able_to_start_its_own_ray():
    """Importing ``longrl.controller.cluster`` (as this file does at collection) must not switch the importer's later
    local clusters to token authentication behind its back: CI once failed every later ``ray.init`` this way."""
    code = ("import os, ray, longrl.controller.cluster\n"
            "print('mode', os.environ.get('RAY_AUTH_MODE'))\n"
            "ray.init(address='local', num_cpus=1, include_dashboard=False, object_store_memory=100_000_000)\n"
            "print('cpus', ray.cluster_resources()['CPU'])\n"
            "ray.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["mode None", "cpus 1.0"]


def _fake_cluster(monkeypatch, states: list[tuple[int, dict[str, float]]]) -> list[str]:
    """Ray as the wait sees it: each poll the next (alive nodes, total resources) of ``states``; the calls made."""
    calls, polls = [], iter(states)
    state = {}

    def nodes():
        state["alive"], state["resources"] = next(polls)
        return [{"Alive": True}] * state["alive"] + [{"Alive": False}]  # a node that left is no node

    monkeypatch.setattr(cluster.ray, "init", lambda address, **_: calls.append(f"init {address}"))
    monkeypatch.setattr(cluster.ray, "shutdown", lambda: calls.append("shutdown"))
    monkeypatch.setattr(cluster.ray, "nodes", nodes)
    monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: state["resources"])
    monkeypatch.setattr(cluster.time, "sleep", lambda _: None)
    return calls


def test_wait_returns_once_every_node_and_gpu_joined(monkeypatch):
    calls = _fake_cluster(monkeypatch, [(1, {"CPU": 64.0, "GPU": 8.0}), (2, {"CPU": 128.0, "GPU": 8.0}),
                                        (2, {"CPU": 128.0, "GPU": 16.0})])
    assert wait_for_cluster("10.0.0.1:6400", nodes=2, ranks=8, timeout_s=60) == {"CPU": 128.0, "GPU": 16.0}
    assert calls == ["init 10.0.0.1:6400", "shutdown"]


def test_wait_gives_up_naming_how_much_of_the_cluster_joined(monkeypatch):
    calls = _fake_cluster(monkeypatch, [(1, {"CPU": 1.0})])
    joined = r"after 0s the cluster at 10\.0\.0\.1:6400 has 1 of 2 node\(s\) and 1 of 2 CPU\(s\)"
    with pytest.raises(ClusterNotReady, match=joined):
        wait_for_cluster("10.0.0.1:6400", nodes=2, ranks=1, timeout_s=0)
    assert calls == ["init 10.0.0.1:6400", "shutdown"]


def test_a_cluster_is_known_by_its_gcs_and_by_the_ray_start_that_blocks_on_it():
    """``ray start --block`` outlives its node's processes when they all exit on SIGTERM, so stop must end it too;
    another cluster's, or a program that is not ``ray start``, is left alone."""
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    ours = [[*ray_cli, "start", "--head", "--port=47001", "--block"],
            ["/venv/bin/ray", "start", "--block", "--address=10.0.0.1:47001"],
            ["raylet", "--gcs-address=10.0.0.1:47001"], ["gcs_server", "--gcs_server_port=47001"]]
    theirs = [[*ray_cli, "start", "--head", "--port=47002"], ["/venv/bin/ray", "start", "--address=10.0.0.1:47002"],
              ["raylet", "--gcs-address=10.0.0.1:47002"], ["server", "start", "--port=47001"]]
    assert [cluster._names_port(args, 47001) for args in ours + theirs] == [True] * 4 + [False] * 4


def _fake_raylet(port: int, temp_dir: Path) -> tuple[subprocess.Popen, int]:
    """A process whose command line names a cluster's GCS and temp dir as a raylet's does, and the pid of its child
    (as a raylet has workers, whose titles name nothing)."""
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, f"--gcs-address=10.0.0.1:{port}", f"--temp_dir={temp_dir}"])
    deadline = time.monotonic() + 20
    while not (child := subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout):
        assert time.monotonic() < deadline, "the fake raylet did not start its child"
        time.sleep(0.05)
    return proc, int(child.split()[0])


def test_stop_ends_one_clusters_processes_and_record_only(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for temp_dir, port in ((ours, 47001), (theirs, 47002)):
        temp_dir.mkdir()
        (temp_dir / "ray_current_cluster").write_text(f"10.0.0.1:{port}")
    (mine, my_child), (other, other_child) = _fake_raylet(47001, ours), _fake_raylet(47002, theirs)
    try:
        assert stop_cluster(47001, grace_s=5) == 2
        assert [alive(pid) for pid in (mine.pid, my_child, other.pid, other_child)] == [False, False, True, True]
        # the record by which `ray.init()` joins the last cluster goes with its cluster; another cluster's stays
        assert not (ours / "ray_current_cluster").exists() and (theirs / "ray_current_cluster").exists()
    finally:
        for proc in (mine, other):
            proc.kill()
            proc.wait()
        for pid in (my_child, other_child):
            if alive(pid):
                os.kill(pid, 9)


@pytest.mark.slow
def test_train_multi_nodes_runs_a_step_over_two_hand_started_nodes(tiny_model_dir, tmp_path, slot):
    rows = tmp_path / "math.jsonl"
    rows.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    env = {**slot.env(), "MODEL_PATH": str(tiny_model_dir("qwen2")), "TRAIN_FILES": str(rows), "VAL_FILES": str(rows),
           "NNODES": "2", "GPUS_PER_NODE": "1", "CPU_ONLY": "1", "CPUS_PER_NODE": "1", "WAIT_TIMEOUT": "120"}
    script = str(REPO / "scripts/train_multi_nodes.sh")
    worker = subprocess.Popen(["bash", script], cwd=tmp_path, env={**env, "NODE_RANK": "1", "HEAD_ADDR": "127.0.0.1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        done = subprocess.run(["bash", script, str(REPO / "examples/qwen2_5_3b_math_grpo.sh"), *TINY], cwd=tmp_path,
                              env={**env, "NODE_RANK": "0"}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "2 node(s) ready" in done.stdout and "'CPU': 2.0" in done.stdout
        # the job's two ranks landed on the two nodes
        pool = re.search(r"resource pool: 2 rank\(s\) of \{'CPU': 1\} on 2 node\(s\): (\w+) \(\S+\): ranks 0; "
                         r"(\w+) \(\S+\): ranks 1$", done.stdout, re.M)
        assert pool and pool.group(1) != pool.group(2), done.stdout[-3000:]
        steps = [json.loads(line) for line in
                 (tmp_path / "outputs/logs/longrl/qwen2_5_3b_math_grpo/metrics.jsonl").read_text().splitlines()]
        assert [step["step"] for step in steps] == [1] and "actor/pg_loss" in steps[0]
        assert worker.wait(timeout=60) is not None  # the worker node's Ray ended with the head's cluster
        assert naming_port(slot.port) == []
    finally:
        worker.kill()


@pytest.mark.slow
def test_srun_multi_nodes_returns_a_failing_jobs_status_and_leaves_no_ray(tmp_path, slot):
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    probe = tmp_path / "fails.sh"
    probe.write_text(PROBE)
    # salloc's environment for the command it runs where it was called (not on a node)
    env = {**slot.env(), "PATH": f"{shims}:{os.environ['PATH']}", "SRUN_LOG": str(tmp_path / "srun.log"),
           "SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_JOB_CPUS_PER_NODE": "1(x2)",
           "GPUS_PER_NODE": "1", "CPU_ONLY": "1", "CPUS_PER_NODE": "1", "WAIT_TIMEOUT": "120",
           "PIDS": str(tmp_path / "pids")}
    done = subprocess.run(["bash", str(REPO / "scripts/srun_multi_nodes.sh"), str(probe), "2", "x=1"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 7, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(rf"^job: RAY_ADDRESS=[\d.]+:{slot.port} NNODES=2 N_GPUS_PER_NODE=1 args: x=1 trainer\.nnodes=2 "
                     r"trainer\.n_gpus_per_node=1$", done.stdout, re.M), done.stdout[-3000:]
    assert "job sees 2 node(s) and 2.0 CPU(s)" in done.stdout
    pids = [int(pid) for pid in (tmp_path / "pids").read_text().split()]
    assert len(pids) >= 5  # GCS, two raylets, their agents and monitors
    assert [pid for pid in pids if alive(pid)] == [] and naming_port(slot.port) == []
    steps = [line.split("|") for line in (tmp_path / "srun.log").read_text().splitlines()]
    assert all(options == "--nodes=1 --ntasks=1 --overlap --cpus-per-task=1" for _, options, _ in steps)
    # onto the first node, the head's address, head, worker, and the teardown on both nodes
    assert [(node, command.split()[3] if "longrl.controller.cluster" in command else command.split()[0])
            for node, _, command in steps] == [("node-a", "bash"), ("node-a", "ip"), ("node-a", "head"),
                                               ("node-b", "worker"), ("node-a", "stop"), ("node-b", "stop")]
