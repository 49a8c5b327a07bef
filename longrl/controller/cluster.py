"""Bring up, wait for and tear down a multi-node Ray cluster: the one bootstrap both launchers use.

``scripts/srun_multi_nodes.sh`` (Slurm) and ``scripts/train_multi_nodes.sh`` (machines started by hand) differ only in
how they reach each node; on a node they run this module::

    python -m longrl.controller.cluster ip
    python -m longrl.controller.cluster head --port 6379 --ranks 8 [--dashboard-port 8265 [--dashboard-host IP]]
                                       [--block]
    python -m longrl.controller.cluster worker --address HEAD_IP:6379 --ranks 8 [--block]
    python -m longrl.controller.cluster wait --address HEAD_IP:6379 --nodes 2 --ranks 8 [--timeout 600]
    python -m longrl.controller.cluster stop --port 6379

``--ranks`` is the trainer's ``trainer.n_gpus_per_node``: the node offers that many GPUs to Ray (``--cpu-only``: no
GPU; the trainer then places one rank per CPU, as its resource pool does on a GPU-less cluster). ``wait`` returns once
the cluster has the nodes and the GPUs (or CPUs) the trainer's pool will ask for, and fails naming what joined
otherwise, so a training job never starts on half a cluster. ``ip`` prints the address this node's Ray announces (Ray's
own choice; ``hostname --ip-address`` is a loopback address on many Debian hosts). ``stop`` ends only this machine's
processes of the cluster at ``--port`` (``ray stop`` ends every Ray process on the machine): another job's or user's
cluster on a shared node survives a teardown.

Token authentication is Ray's default for ``ray start``; every process of the cluster must agree on it, so run as a
program this module sets ``RAY_AUTH_MODE`` to ``token`` unless the caller chose (the launchers export it for the job).
The dashboard, when served, listens on 127.0.0.1 unless ``--dashboard-host`` says otherwise: it can submit jobs that
run code on the cluster, so opening it to the network (``0.0.0.0``) is the user's explicit choice; from elsewhere,
reach it through an SSH tunnel (``ssh -L 8265:127.0.0.1:8265 head``).
``RAY_START_ARGS`` adds options to every ``ray start`` (e.g. ``--object-store-memory``, ``--temp-dir``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# Read by Ray when it is imported: the driver here, the `ray start` children and the training job must all agree.
# Only when this module runs as the bootstrap program: a process that imports it (the trainer, a test) keeps the mode
# its own Ray was imported with, and setting it there would start that process's later local clusters in token mode
# while its driver, already imported, stays in the other (every such ray.init then fails to reach its GCS).
if __name__ == "__main__":
    os.environ.setdefault("RAY_AUTH_MODE", "token")

import ray  # noqa: E402
import psutil  # noqa: E402  (shipped with Ray, on the path once ray is imported; `ray stop` uses it too)

__all__ = ["ClusterNotReady", "cluster_processes", "main", "ray_start_command", "start_command", "stop_cluster",
           "wait_for_cluster"]


class ClusterNotReady(RuntimeError):
    """The cluster did not reach the size the training job needs before the deadline."""


def _ray_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ray.scripts.scripts", *args]


def ray_start_command(address: str | None, port: int, ranks: int, cpu_only: bool, num_cpus: int | None,
                      block: bool, dashboard_port: int | None = None,
                      dashboard_host: str = "127.0.0.1") -> list[str]:
    """``ray start`` for a head (``address=None``, listening on ``port``; a dashboard on ``dashboard_host`` (this
    machine only by default) and ``dashboard_port`` when a port is given, none otherwise) or a worker joining
    ``address``."""
    command = _ray_cli("start", "--disable-usage-stats")
    if address is not None:
        command.append(f"--address={address}")
    elif dashboard_port is None:
        command += ["--head", f"--port={port}", "--include-dashboard=false"]
    else:
        command += ["--head", f"--port={port}", f"--dashboard-host={dashboard_host}",
                    f"--dashboard-port={dashboard_port}"]
    command.append(f"--num-gpus={0 if cpu_only else ranks}")
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    if block:
        command.append("--block")
    return command + shlex.split(os.environ.get("RAY_START_ARGS", ""))


def _connect(address: str, deadline: float) -> None:
    """Join ``address`` as a driver, retrying while the head is still coming up."""
    while True:
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            return
        except ConnectionError as exc:
            if time.monotonic() > deadline:
                raise ClusterNotReady(f"no Ray head answered at {address}: {exc}") from exc
            time.sleep(2.0)


def wait_for_cluster(address: str, nodes: int, ranks: int, timeout_s: float) -> dict[str, float]:
    """Block until ``nodes`` nodes are alive and the cluster offers ``nodes x ranks`` GPUs (CPUs on a cluster without
    GPUs); return its total resources. Raises :class:`ClusterNotReady` with what joined when time runs out."""
    deadline = time.monotonic() + timeout_s
    _connect(address, deadline)
    try:
        while True:
            alive = [node for node in ray.nodes() if node["Alive"]]
            resources = ray.cluster_resources()
            kind = "GPU" if resources.get("GPU", 0) > 0 else "CPU"
            if len(alive) >= nodes and resources.get(kind, 0) >= nodes * ranks:
                return resources
            if time.monotonic() > deadline:
                raise ClusterNotReady(
                    f"after {timeout_s:.0f}s the cluster at {address} has {len(alive)} of {nodes} node(s) and "
                    f"{resources.get(kind, 0):g} of {nodes * ranks} {kind}(s) ({resources}); check the nodes that did "
                    "not join (their ray start output, the port, the firewall) or raise the timeout")
            time.sleep(1.0)
    finally:
        ray.shutdown()


def _is_ray_start(args: Sequence[str]) -> bool:
    """Whether a command line is ``ray start`` (the console script or ``python -m ray.scripts.scripts``)."""
    cli = [i for i, arg in enumerate(args[:3]) if arg.endswith(("ray.scripts.scripts", "/ray")) or arg == "ray"]
    return bool(cli) and cli[0] + 1 < len(args) and args[cli[0] + 1] == "start"


def _names_port(args: Sequence[str], port: int) -> bool:
    """Whether a command line belongs to the cluster whose GCS listens on ``port``: the GCS server carries the port,
    every other Ray process started by ``ray start`` (raylet, monitors, dashboard) the GCS address, and a
    ``ray start --block`` the head's port or the address it joined. The last must be ended too: it outlives its
    node's processes when they all exit on SIGTERM (Ray counts that as graceful), and a worker node's launcher
    waits on it."""
    if _is_ray_start(args):
        return any(arg == f"--port={port}" or (arg.startswith("--address=") and arg.endswith(f":{port}"))
                   for arg in args)
    return any(arg == f"--gcs_server_port={port}" or (arg.startswith("--gcs-address=") and arg.endswith(f":{port}"))
               for arg in args)


def cluster_processes(port: int) -> list[psutil.Process]:
    """This machine's processes of the cluster at ``port``: those naming it on their command line and their
    descendants (workers and agents, whose process titles name nothing)."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if _names_port(proc.info["cmdline"] or [], port):
            found[proc.pid] = proc
            try:
                found.update((child.pid, child) for child in proc.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
    return list(found.values())


def _forget_cluster(procs: Sequence[psutil.Process], port: int) -> None:
    """Remove the record by which ``ray.init()`` without an address joins the last cluster ``ray start`` made
    (``TEMP_DIR/ray_current_cluster``, as ``ray stop`` does) when it names this one: else every later ``ray.init()``
    on the machine would try to join a cluster that is gone."""
    temp_dirs = set()
    for proc in procs:
        try:
            args = proc.cmdline()
        except psutil.Error:
            continue
        temp_dirs.update(arg.split("=", 1)[1] for arg in args if arg.startswith(("--temp_dir=", "--temp-dir=")))
    for temp_dir in temp_dirs:
        record = Path(temp_dir) / "ray_current_cluster"
        try:
            if record.read_text().strip().endswith(f":{port}"):
                record.unlink()
        except OSError:
            pass


def stop_cluster(port: int, grace_s: float = 3.0) -> int:
    """Terminate this machine's processes of the cluster at ``port``, killing those still alive after ``grace_s`` (a
    raylet drains for 10 s on SIGTERM, which a finished job has no use for); the number found."""
    procs = cluster_processes(port)
    _forget_cluster(procs, port)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=2.0)
    return len(procs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m longrl.controller.cluster", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("ip", help="print the address this node's Ray announces")
    for name in ("head", "worker"):
        start = commands.add_parser(name, help=f"start this node's Ray {name}")
        if name == "head":
            start.add_argument("--port", type=int, default=6379)
            start.add_argument("--dashboard-port", type=int, default=None, help="serve the dashboard (default: none)")
            start.add_argument("--dashboard-host", default="127.0.0.1",
                               help="the dashboard's interface (default: 127.0.0.1; 0.0.0.0 opens it to the network)")
        else:
            start.add_argument("--address", required=True, help="HEAD_IP:PORT")
        start.add_argument("--ranks", type=int, required=True, help="trainer.n_gpus_per_node")
        start.add_argument("--cpu-only", action="store_true", help="offer no GPU (one rank per CPU)")
        start.add_argument("--num-cpus", type=int, default=None, help="CPUs this node offers (default: all)")
        start.add_argument("--block", action="store_true", help="stay in the foreground until the node stops")
    wait = commands.add_parser("wait", help="wait until every node and GPU has joined")
    wait.add_argument("--address", required=True)
    wait.add_argument("--nodes", type=int, required=True)
    wait.add_argument("--ranks", type=int, required=True, help="trainer.n_gpus_per_node")
    wait.add_argument("--timeout", type=float, default=600.0)
    stop = commands.add_parser("stop", help="stop this node's processes of the cluster at --port")
    stop.add_argument("--port", type=int, required=True, help="the head's GCS port (RAY_PORT)")
    stop.add_argument("--grace", type=float, default=3.0, help="seconds before SIGTERM becomes SIGKILL")
    return parser


def start_command(args: argparse.Namespace) -> list[str]:
    """The ``ray start`` command line of a parsed ``head`` or ``worker`` command."""
    if args.command == "worker":
        return ray_start_command(args.address, 0, args.ranks, args.cpu_only, args.num_cpus, args.block)
    return ray_start_command(None, args.port, args.ranks, args.cpu_only, args.num_cpus, args.block,
                             args.dashboard_port, args.dashboard_host)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "ip":
        print(ray.util.get_node_ip_address())
        return 0
    if args.command in ("head", "worker"):
        command = start_command(args)
        if args.block:  # this process becomes the node's lifetime: a Slurm step ends with it
            os.execv(command[0], command)
        return subprocess.run(command).returncode
    if args.command == "wait":
        try:
            resources = wait_for_cluster(args.address, args.nodes, args.ranks, args.timeout)
        except ClusterNotReady as exc:
            print(f"longrl.controller.cluster: {exc}", file=sys.stderr)
            return 1
        print(f"longrl.controller.cluster: {args.nodes} node(s) ready at {args.address}: {resources}", flush=True)
        return 0
    stopped = stop_cluster(args.port, args.grace)
    print(f"longrl.controller.cluster: stopped {stopped} process(es) of the cluster at port {args.port}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
