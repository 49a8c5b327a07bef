"""The worker base class: a Ray actor that knows its place in the group.

The group sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in the
actor's environment before ``__init__`` runs, so a subclass can call :meth:`Worker.init_distributed`
(TCP rendezvous at the master address) whenever it is ready. Outside Ray (a unit test) the defaults describe a
single process: rank 0 of 1.

Each rank also declares its data-parallel layout for ``DP_COMPUTE`` via :meth:`Worker.dispatch_layout`:
with ``sp_size`` sequence-parallel ranks per DP group (SP ranks contiguous), ``dp_rank = rank // sp_size``
and the group's result is taken from ``sp_rank == 0``. A subclass sets ``self.sp_size`` (e.g. from its
config) before its first ``DP_COMPUTE`` call, or overrides ``dispatch_layout`` for other layouts.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from longrl.controller.dispatch import RankLayout

__all__ = ["Worker", "distributed_backend"]


def distributed_backend() -> str:
    """``nccl`` where this process sees a GPU, ``gloo`` otherwise (CPU tests, laptops)."""
    return "nccl" if torch.cuda.is_available() else "gloo"


class Worker:
    """Base of every worker class run by a :class:`~longrl.controller.worker_group.RayWorkerGroup`."""

    sp_size: int = 1

    def __init__(self) -> None:
        env = os.environ
        self.rank = int(env.get("RANK", 0))
        self.world_size = int(env.get("WORLD_SIZE", 1))
        self.local_rank = int(env.get("LOCAL_RANK", 0))
        self.master_addr = env.get("MASTER_ADDR")
        port = env.get("MASTER_PORT")
        self.master_port = int(port) if port else None

    def device(self) -> torch.device:
        """This rank's device. Ray exposes one GPU per actor, so on GPU it is always ``cuda:0``."""
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")

    def init_distributed(self, timeout_s: float = 120.0) -> None:
        """Join the group's default process group (gloo on CPU, nccl on GPU); no-op if already joined."""
        if dist.is_initialized():
            return
        if self.master_addr is None or self.master_port is None:
            raise RuntimeError(
                f"rank {self.rank}: MASTER_ADDR/MASTER_PORT are not set; init_distributed needs a worker "
                "started by RayWorkerGroup (or those variables exported)"
            )
        if torch.cuda.is_available():
            torch.cuda.set_device(self.device())
        dist.init_process_group(
            backend=distributed_backend(),
            init_method=f"tcp://{self.master_addr}:{self.master_port}",
            rank=self.rank,
            world_size=self.world_size,
            timeout=timedelta(seconds=timeout_s),
        )

    def dispatch_layout(self, method: str) -> RankLayout:
        """This rank's DP layout for ``method`` (the name lets colocated roles differ)."""
        sp_size = self.sp_size
        if sp_size <= 0 or self.world_size % sp_size:
            raise ValueError(f"rank {self.rank}: sp_size={sp_size} does not divide world_size={self.world_size}")
        return RankLayout(
            dp_rank=self.rank // sp_size, dp_size=self.world_size // sp_size, is_collect=self.rank % sp_size == 0
        )
