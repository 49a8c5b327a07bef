"""Bring up, wait for and tear down a multi-node Ray cluster: the one bootstrap both launchers use.

``scripts/srun_multi_nodes.sh`` (Slurm) and ``scripts/train_multi_nodes.sh`` (machines started by hand) differ only in
how they reach each node; on a node they run this module::

    python -m longrl.controller.cluster head --port 6379 --ranks 8 [--block]
    python -m longrl.controller.cluster worker --address HEAD_IP:6379 --ranks 8 [--block]
    python -m longrl.controller.cluster wait --address HEAD_IP:6379 --nodes 2 --ranks 8 [--timeout 600]
    python -m longrl.controller.cluster stop

``--ranks`` is the trainer's ``trainer.n_gpus_per_node``: the node offers that many GPUs to Ray (``--cpu-only``: no
GPU; the trainer then places one rank per CPU, as its resource pool does on a GPU-less cluster). ``wait`` returns once
the cluster has the nodes and the GPUs (or CPUs) the trainer's pool will ask for, and fails naming what joined
otherwise, so a training job never starts on half a cluster. Token authentication is Ray's default for ``ray start``;
every process of the cluster must agree on it, so ``RAY_AUTH_MODE`` is set to ``token`` unless the caller chose.
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

# Read by Ray when it is imported: the driver here, the `ray start` children and the training job must all agree.
os.environ.setdefault("RAY_AUTH_MODE", "token")

import ray  # noqa: E402

__all__ = ["ClusterNotReady", "main", "ray_start_command", "wait_for_cluster"]


class ClusterNotReady(RuntimeError):
    """The cluster did not reach the size the training job needs before the deadline."""


def _ray_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ray.scripts.scripts", *args]


def ray_start_command(address: str | None, port: int, ranks: int, cpu_only: bool, num_cpus: int | None,
                      block: bool) -> list[str]:
    """``ray start`` for a head (``address=None``, listening on ``port``) or a worker joining ``address``."""
    command = _ray_cli("start", "--disable-usage-stats")
    command += ["--head", f"--port={port}", "--include-dashboard=false"] if address is None else [f"--address={address}"]
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m longrl.controller.cluster", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("head", "worker"):
        start = commands.add_parser(name, help=f"start this node's Ray {name}")
        if name == "head":
            start.add_argument("--port", type=int, default=6379)
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
    commands.add_parser("stop", help="stop every Ray process on this node")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("head", "worker"):
        address = None if args.command == "head" else args.address
        port = getattr(args, "port", 0)
        command = ray_start_command(address, port, args.ranks, args.cpu_only, args.num_cpus, args.block)
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
    return subprocess.run(_ray_cli("stop", "--force")).returncode


if __name__ == "__main__":
    sys.exit(main())
