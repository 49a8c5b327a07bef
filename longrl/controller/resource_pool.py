"""Ray placement groups reserving one bundle per worker rank.

A pool reserves ``nnodes`` placement groups of ``devices_per_node`` bundles each, every group
STRICT_PACKed so a node's ranks land on one machine (NCCL and shared memory stay intra-node).
On a cluster without GPUs the bundles are ``{"CPU": 1}``, so the whole controller runs on a laptop.
Reservation is eager and bounded by a timeout: a pool that can never be placed fails at once with
what was asked and what the cluster has, instead of hanging a training job.
"""

from __future__ import annotations

import os

import ray
from ray.exceptions import GetTimeoutError
from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table, remove_placement_group

__all__ = ["ResourcePool", "start_local_ray", "stop_ray"]


def start_local_ray(num_cpus: int) -> bool:
    """Join Ray: the cluster at ``RAY_ADDRESS`` when a launcher exported one (``scripts/*_multi_nodes.sh``), else a
    new one on this machine; nothing when this process already joined one (a test's). True when joined here, so the
    caller knows to leave (:func:`stop_ray` stops a cluster started here; from a launcher's it only disconnects)."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        _reap_orphans_of_this_process()
    return True


_REAPER: list[object] = []


def _reap_orphans_of_this_process() -> None:
    """Once per process: the Ray instance started here goes down with it even on ``kill -9`` (see
    :mod:`longrl.controller.orphan_reaper`; Ray's agents would otherwise outlive it by a minute)."""
    if not _REAPER:
        from longrl.controller.orphan_reaper import start_orphan_reaper

        _REAPER.append(start_orphan_reaper())


def stop_ray() -> None:
    ray.shutdown()


class ResourcePool:
    """``nnodes`` x ``devices_per_node`` bundles.

    Rank ``r`` is bundle ``r % devices_per_node`` of node (placement group) ``r // devices_per_node``.
    """

    def __init__(
        self,
        nnodes: int = 1,
        devices_per_node: int = 1,
        *,
        use_gpu: bool | None = None,
        cpus_per_gpu: int = 1,
        timeout_s: float = 120.0,
    ) -> None:
        """Reserve the bundles and wait for them. ``use_gpu=None`` means "if the cluster has GPUs"."""
        if nnodes <= 0 or devices_per_node <= 0:
            raise ValueError(
                f"ResourcePool needs positive nnodes and devices_per_node, got {nnodes} x {devices_per_node}"
            )
        if use_gpu is None:
            use_gpu = ray.cluster_resources().get("GPU", 0) > 0
        self.nnodes = nnodes
        self.devices_per_node = devices_per_node
        self.use_gpu = use_gpu
        self.bundle: dict[str, float] = {"GPU": 1, "CPU": cpus_per_gpu} if use_gpu else {"CPU": 1}
        self.placement_groups: list[PlacementGroup] = [
            placement_group([dict(self.bundle) for _ in range(devices_per_node)], strategy="STRICT_PACK")
            for _ in range(nnodes)
        ]
        try:
            ray.get([pg.ready() for pg in self.placement_groups], timeout=timeout_s)
        except GetTimeoutError:
            self.remove()
            raise TimeoutError(
                f"ResourcePool: asked for {nnodes} node(s) x {devices_per_node} bundle(s) of {self.bundle} "
                f"(each node's bundles STRICT_PACKed on one machine), not placed within {timeout_s}s; "
                f"the cluster has {ray.cluster_resources()} in total, {ray.available_resources()} free. "
                "Lower the pool size, free resources, or add nodes."
            ) from None

    @property
    def world_size(self) -> int:
        return self.nnodes * self.devices_per_node

    def rank_bundles(self) -> list[tuple[PlacementGroup, int, int]]:
        """``(placement_group, bundle_index, local_rank)`` per rank, in rank order."""
        return [(pg, i, i) for pg in self.placement_groups for i in range(self.devices_per_node)]

    def rank_nodes(self) -> list[str]:
        """The id of the Ray node each rank's bundle was placed on, in rank order."""
        return [placement_group_table(pg)["bundles_to_node_id"][i] for pg, i, _ in self.rank_bundles()]

    def describe(self) -> str:
        """Where the ranks went, one ``node (ip): ranks`` entry per node: what a multi-node run prints so that a
        pool spanning the cluster (or not) is seen before the first step."""
        ips = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes()}
        ranks: dict[str, list[int]] = {}
        for rank, node in enumerate(self.rank_nodes()):
            ranks.setdefault(node, []).append(rank)
        where = "; ".join(f"{node} ({ips.get(node, '?')}): ranks {', '.join(map(str, r))}" for node, r in ranks.items())
        return f"{self.world_size} rank(s) of {self.bundle} on {len(ranks)} node(s): {where}"

    def remove(self) -> None:
        """Give the reserved bundles back to the cluster (actors in them must be gone first)."""
        for pg in self.placement_groups:
            remove_placement_group(pg)
        self.placement_groups = []
