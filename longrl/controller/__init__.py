"""The Ray single controller: resource pools, worker groups, dispatch and collect modes.

The trainer (one driver process) holds worker groups and calls them like local objects::

    pool = ResourcePool(nnodes=1, devices_per_node=8)        # longrl.controller.resource_pool
    actor_wg = RayWorkerGroup(pool, ActorWorker, config)     # longrl.controller.worker_group
    out = actor_wg.compute_log_prob(batch)                   # per the method's @register mode

* :mod:`.resource_pool` -- :class:`ResourcePool`, placement groups with a timeout and a clear error.
* :mod:`.decorators` -- ``@register(dispatch_mode=Dispatch.X, execute_mode=Execute.Y)`` on worker methods.
* :mod:`.dispatch` -- pure (Ray-free) planning and collecting of ``ONE_TO_ALL``, ``RANK_ZERO`` and
  ``DP_COMPUTE``. ``DP_COMPUTE`` pads a Batch to a multiple of the DP size, sends chunk ``d`` to every
  rank of DP group ``d`` (SP/TP ranks share it) and collects once per group, from its collect rank.
* :mod:`.worker` -- :class:`Worker`, the actor base: rank/world/local rank/master address from the env,
  ``init_distributed`` (gloo on CPU, nccl on GPU), ``dispatch_layout`` from ``sp_size``.
* :mod:`.worker_group` -- :class:`RayWorkerGroup`, exposing every registered method on the group.
* :mod:`.colocate` -- :func:`colocate`, several roles in one actor with methods ``<role>_<method>``.

Only this package and ``trainer/`` import Ray, and within it only :mod:`.resource_pool` and :mod:`.worker_group`:
the package itself re-exports the Ray-free parts, so ``workers/`` can subclass :class:`Worker` and ``@register``
its methods without importing Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from longrl.controller.colocate import colocate
from longrl.controller.decorators import CollectiveTimeout, Dispatch, Execute, register

if TYPE_CHECKING:
    from longrl.controller.dispatch import RankLayout
    from longrl.controller.worker import Worker, distributed_backend

__all__ = ["CollectiveTimeout", "Dispatch", "Execute", "RankLayout", "Worker", "colocate", "distributed_backend",
           "register"]


def __getattr__(name: str) -> Any:
    """The names whose modules import torch, loaded on first use: the multi-node bootstrap (``python -m
    longrl.controller.cluster``, on every node) needs none of them."""
    if name == "RankLayout":
        from longrl.controller.dispatch import RankLayout

        return RankLayout
    if name in ("Worker", "distributed_backend"):
        from longrl.controller import worker

        return getattr(worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
