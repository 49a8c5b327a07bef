"""Real Ray on CPU: gloo all-reduce across ranks, every dispatch mode, SP layouts, colocation, pool timeout.

Ray is started with 4 CPUs, so the 2-rank group is shut down before the 4-rank group starts; the
tests run in file order (pytest's default) and the 4-rank fixture takes the 2-rank one down first.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import timedelta

import pytest
import ray
import torch
import torch.distributed as dist

from longrl.controller import CollectiveTimeout, Dispatch, Execute, Worker, colocate, register
from longrl.controller.resource_pool import ResourcePool
from longrl.controller.worker_group import RayWorkerGroup
from longrl.protocol import Batch


def transform(batch: Batch) -> Batch:
    """The per-row computation under test; run locally it is the reference for DP_COMPUTE."""
    x = batch.tensors["x"]
    return Batch.from_dict({"y": x * 2 + torch.sin(x)}, {"uid": batch.non_tensors["uid"]})


class Toy(Worker):
    def __init__(self, sp_size: int = 1) -> None:
        super().__init__()
        self.sp_size = sp_size
        self.seen: list[str] = []

    @register(Dispatch.ONE_TO_ALL)
    def all_reduce_rank_plus_one(self) -> tuple[float, int, int, int, str]:
        self.init_distributed(timeout_s=30)
        value = torch.tensor([float(self.rank + 1)])
        dist.all_reduce(value)
        return value.item(), self.rank, self.world_size, self.local_rank, dist.get_backend()

    @register(Dispatch.RANK_ZERO)
    def whoami(self) -> tuple[int, int]:
        return self.rank, self.world_size

    @register(Dispatch.DP_COMPUTE)
    def transform(self, batch: Batch) -> Batch:
        return transform(batch)

    @register(Dispatch.DP_COMPUTE, Execute.ASYNC)
    def tag_rank(self, batch: Batch) -> Batch:
        self.seen = batch.non_tensors["uid"].tolist()
        return Batch.from_dict({"rank": torch.full((len(batch),), self.rank)}, {"uid": batch.non_tensors["uid"]})

    @register(Dispatch.ONE_TO_ALL)
    def seen_uids(self) -> list[str]:
        return self.seen

    @register(Dispatch.ONE_TO_ALL)
    def all_reduce_with_rank_one_stopped(self, timeout_s: float) -> float:
        group = dist.new_group(timeout=timedelta(seconds=timeout_s))  # this call's own time-out
        if self.rank == 1:
            os.kill(os.getpid(), signal.SIGSTOP)  # hung: neither answers nor dies
        value = torch.ones(1)
        dist.all_reduce(value, group=group)
        return value.item()


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    # Ship this test module's classes by value: the worker processes cannot import tests/.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pair(ray_cluster) -> RayWorkerGroup:
    group = RayWorkerGroup(ResourcePool(1, 2, timeout_s=30), Toy)
    yield group
    group.shutdown()


@pytest.fixture(scope="module")
def hybrid(ray_cluster, pair) -> RayWorkerGroup:
    pair.shutdown()  # free its 2 CPUs for the 4 ranks
    group = RayWorkerGroup(ResourcePool(1, 4, timeout_s=30), colocate({"sp": Toy, "dp": Toy}), sp={"sp_size": 2})
    yield group
    group.shutdown()


def _batch(n: int) -> Batch:
    return Batch.from_dict({"x": torch.linspace(-1.0, 3.0, n)}, {"uid": [f"u{i}" for i in range(n)]})


def test_ranks_join_a_gloo_group_and_all_reduce(pair: RayWorkerGroup) -> None:
    results = pair.all_reduce_rank_plus_one()
    assert results == [(3.0, 0, 2, 0, "gloo"), (3.0, 1, 2, 1, "gloo")]  # 1 + 2, by rank
    assert pair.whoami() == (0, 2)


def test_dp_compute_matches_a_single_process(pair: RayWorkerGroup) -> None:
    batch = _batch(5)
    out, expected = pair.transform(batch), transform(batch)
    assert len(out) == 5 and torch.equal(out.tensors["y"], expected.tensors["y"])
    assert out.non_tensors["uid"].tolist() == expected.non_tensors["uid"].tolist()


def test_a_stopped_rank_fails_the_call_naming_the_rank_and_method(pair: RayWorkerGroup) -> None:
    """Last test of ``pair``: its rank 1 stays stopped until the next fixture kills the group."""
    start = time.monotonic()
    with pytest.raises(CollectiveTimeout, match=r"rank 0 of 2 timed out in a collective during "
                                                r"Toy\.all_reduce_with_rank_one_stopped"):
        pair.all_reduce_with_rank_one_stopped(2.0)
    assert time.monotonic() - start < 2.0 + 10.0  # the time-out, not a wait for the stopped rank


def test_sp_groups_share_a_chunk_and_are_collected_once(hybrid: RayWorkerGroup) -> None:
    pending = hybrid.sp_tag_rank(_batch(5))  # Execute.ASYNC: a PendingResult
    out = pending.get(timeout_s=30)
    # dp=2, sp=2: rows padded to 6 -> chunks [u0 u1 u2] to ranks 0,1 and [u3 u4 u0] to ranks 2,3;
    # collected from ranks 0 and 2.
    assert out.tensors["rank"].tolist() == [0, 0, 0, 2, 2]
    assert out.non_tensors["uid"].tolist() == [f"u{i}" for i in range(5)]
    seen = hybrid.sp_seen_uids()
    assert seen[0] == seen[1] == ["u0", "u1", "u2"] and seen[2] == seen[3] == ["u3", "u4", "u0"]


def test_colocated_roles_keep_their_own_layout(hybrid: RayWorkerGroup) -> None:
    out = hybrid.dp_tag_rank(_batch(5)).get(timeout_s=30)
    # dp=4, sp=1: 5 rows padded to 8 -> chunks of 2 per rank; the first 5 rows come from ranks 0, 0, 1, 1, 2.
    assert out.tensors["rank"].tolist() == [0, 0, 1, 1, 2]
    assert hybrid.sp_whoami() == (0, 4)
    assert not hasattr(hybrid, "transform") and hasattr(hybrid, "dp_transform")


def test_pool_larger_than_the_cluster_times_out_with_a_clear_error(ray_cluster) -> None:
    expected = r"1 node\(s\) x 16 bundle\(s\) of \{'CPU': 1\}.*the cluster has \{.*'CPU': 4\.0"
    with pytest.raises(TimeoutError, match=expected):
        ResourcePool(1, 16, use_gpu=False, timeout_s=1)
