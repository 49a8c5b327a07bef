"""A group of worker actors, one per pool bundle, driven as one object by the controller.

``RayWorkerGroup(pool, ActorWorker, cfg).compute_log_prob(batch)`` runs the worker method on the
ranks its ``@register`` mode says, with the arguments split as that mode says, and returns the
collected result. Every ``@register``ed method of the worker class becomes such a group method.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from longrl.controller.decorators import Dispatch, Execute, MethodSpec, registered_methods
from longrl.controller.dispatch import DispatchPlan, RankLayout, collect, plan_dispatch
from longrl.controller.resource_pool import ResourcePool
from longrl.controller.worker import Worker
from longrl.protocol import Batch

__all__ = ["PendingResult", "RayWorkerGroup", "free_rendezvous_port"]


class PendingResult:
    """An ``Execute.ASYNC`` call in flight; :meth:`get` waits for the ranks and collects."""

    def __init__(self, plan: DispatchPlan, refs: list[ray.ObjectRef]) -> None:
        self._plan, self._refs = plan, refs

    def get(self, timeout_s: float | None = None) -> Any:
        """Every rank's result, collected; the first rank's error as soon as it arrives.

        ``ray.get`` of all ranks would wait for every one: with a rank hung (SIGSTOP, a deadlock), the ranks that
        timed out in their collectives would report to nobody and the run would hang."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pending = list(self._refs)
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, pending = ray.wait(pending, num_returns=1, timeout=left)
            if not ready:
                raise GetTimeoutError(f"{len(pending)} of {len(self._refs)} ranks gave no result in {timeout_s} s")
            ray.get(ready)  # raises that rank's error now
        return collect(self._plan, ray.get(self._refs))


def free_rendezvous_port(attempts: int = 64) -> int:
    """A port free right now, chosen *below* the kernel's ephemeral range.

    A port from ``bind(0)`` comes from the range the kernel also hands to outgoing connections, and Ray opens many:
    between this probe and rank 0's listen one of them can take it (EADDRINUSE). Below the range only explicit binds
    compete. Falls back to ``bind(0)`` when nothing below is free.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(attempts if low > 11000 else 0):
        port = rng.randrange(10000, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


@ray.remote
def _node_address() -> tuple[str, int]:
    """This node's IP and a port free on it right now (for rank 0's rendezvous)."""
    return ray.util.get_node_ip_address(), free_rendezvous_port()


class RayWorkerGroup:
    """One ``worker_cls`` actor per bundle of ``resource_pool``, built with ``*args, **kwargs``."""

    def __init__(self, resource_pool: ResourcePool, worker_cls: type[Worker], *args: Any, **kwargs: Any) -> None:
        if not (isinstance(worker_cls, type) and issubclass(worker_cls, Worker)):
            raise TypeError(f"worker_cls must be a Worker subclass, got {worker_cls!r}")
        self.resource_pool = resource_pool
        self.worker_cls = worker_cls
        self.world_size = resource_pool.world_size
        self._layouts: dict[str, list[RankLayout]] = {}
        bundles = resource_pool.rank_bundles()
        # The rendezvous port is picked on rank 0's node, in rank 0's bundle, before any actor starts,
        # so every rank (rank 0 included) has the full environment in __init__.
        probe = _node_address.options(
            num_cpus=resource_pool.bundle["CPU"], scheduling_strategy=_in_bundle(*bundles[0][:2])
        )
        self.master_addr, self.master_port = ray.get(probe.remote())
        actor_cls = ray.remote(worker_cls)
        self.workers = []
        for rank, (pg, bundle_index, local_rank) in enumerate(bundles):
            env = {
                "RANK": str(rank),
                "WORLD_SIZE": str(self.world_size),
                "LOCAL_RANK": str(local_rank),
                "MASTER_ADDR": self.master_addr,
                "MASTER_PORT": str(self.master_port),
            }
            options: dict[str, Any] = {
                "num_cpus": resource_pool.bundle["CPU"],
                "num_gpus": resource_pool.bundle.get("GPU", 0),
                "scheduling_strategy": _in_bundle(pg, bundle_index),
                "runtime_env": {"env_vars": env},
            }
            self.workers.append(actor_cls.options(**options).remote(*args, **kwargs))
        for name, spec in registered_methods(worker_cls).items():
            if hasattr(self, name):
                raise AttributeError(
                    f"{worker_cls.__name__}.{name} is @register'ed but clashes with RayWorkerGroup.{name}; rename it"
                )
            setattr(self, name, self._group_method(name, spec))

    def _group_method(self, name: str, spec: MethodSpec) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return self.execute(name, spec, *args, **kwargs)

        call.__name__ = name
        call.__doc__ = getattr(self.worker_cls, name).__doc__
        return call

    def execute(self, name: str, spec: MethodSpec, *args: Any, **kwargs: Any) -> Any:
        """Dispatch ``name`` per ``spec``; blocking calls return the result, async ones a :class:`PendingResult`."""
        layouts = self._layout(name) if spec.dispatch is Dispatch.DP_COMPUTE else None
        plan = plan_dispatch(spec.dispatch, self.world_size, args, kwargs, layouts, method=name)
        stored: dict[int, Any] = {}

        def once(value: Any) -> Any:
            # A Batch sent to several ranks (ONE_TO_ALL, an SP group's shared chunk) is serialized once.
            if not isinstance(value, Batch):
                return value
            if id(value) not in stored:
                stored[id(value)] = ray.put(value)
            return stored[id(value)]

        refs = [
            getattr(self.workers[c.rank], name).remote(*map(once, c.args), **{k: once(v) for k, v in c.kwargs.items()})
            for c in plan.calls
        ]
        pending = PendingResult(plan, refs)
        return pending if spec.execute is Execute.ASYNC else pending.get()

    def _layout(self, name: str) -> list[RankLayout]:
        """Every rank's declared DP layout for ``name``, asked on first use and then cached."""
        if name not in self._layouts:
            self._layouts[name] = ray.get([w.dispatch_layout.remote(name) for w in self.workers])
        return self._layouts[name]

    def shutdown(self) -> None:
        """Kill the actors and release the pool's bundles."""
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []
        self.resource_pool.remove()


def _in_bundle(pg: Any, bundle_index: int) -> PlacementGroupSchedulingStrategy:
    return PlacementGroupSchedulingStrategy(
        placement_group=pg, placement_group_bundle_index=bundle_index, placement_group_capture_child_tasks=True
    )
