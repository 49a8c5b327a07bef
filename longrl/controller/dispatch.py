"""Dispatch and collect: which ranks a group call runs on, with which arguments, and what comes back.

Pure bookkeeping with no Ray in it, so every mode is unit-testable by hand. ``DP_COMPUTE`` follows
the data-parallel layout the ranks declare (:class:`RankLayout`): with sequence/tensor parallelism
several ranks form one DP group, all of them get the *same* chunk (they cooperate on it), and the
result is taken from the group's single collect rank instead of all-gathering inside the group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from longrl.controller.decorators import Dispatch
from longrl.protocol import Batch

__all__ = ["Call", "DispatchPlan", "RankLayout", "collect", "plan_dispatch"]


@dataclass(frozen=True)
class RankLayout:
    """One rank's place in the data-parallel layout: its DP group and whether results come from it."""

    dp_rank: int
    dp_size: int
    is_collect: bool


@dataclass(frozen=True)
class Call:
    rank: int
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class DispatchPlan:
    """The calls to make and, for collecting, which of them count (positions in ``calls``, in order)."""

    mode: Dispatch
    calls: list[Call]
    collect_from: list[int]
    pad_size: int = 0


def plan_dispatch(
    mode: Dispatch,
    world_size: int,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    layouts: Sequence[RankLayout] | None = None,
    method: str = "<method>",
) -> DispatchPlan:
    """Turn one group call into per-rank calls. ``layouts`` (one per rank) is needed for ``DP_COMPUTE``."""
    if mode is Dispatch.ONE_TO_ALL:
        calls = [Call(rank, args, kwargs) for rank in range(world_size)]
        return DispatchPlan(mode, calls, list(range(world_size)))
    if mode is Dispatch.RANK_ZERO:
        return DispatchPlan(mode, [Call(0, args, kwargs)], [0])
    if mode is Dispatch.DP_COMPUTE:
        return _plan_dp(world_size, args, kwargs, layouts, method)
    raise ValueError(f"unknown dispatch mode {mode!r} for {method}")


def collect(plan: DispatchPlan, results: Sequence[Any]) -> Any:
    """Combine the per-call ``results`` (aligned with ``plan.calls``) into the group call's result.

    ``ONE_TO_ALL`` gives a list by rank, ``RANK_ZERO`` rank 0's value, ``DP_COMPUTE`` the collect
    ranks' Batches concatenated in DP order with the padding rows dropped (non-Batch results come
    back as a list by DP rank, padding included, since there are no rows to drop).
    """
    if len(results) != len(plan.calls):
        raise ValueError(f"collect: {len(results)} results for {len(plan.calls)} calls")
    picked = [results[i] for i in plan.collect_from]
    if plan.mode is Dispatch.RANK_ZERO:
        return picked[0]
    if plan.mode is Dispatch.DP_COMPUTE and picked and all(isinstance(r, Batch) for r in picked):
        return Batch.concat(picked).unpad(plan.pad_size)
    return picked


def _plan_dp(
    world_size: int,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    layouts: Sequence[RankLayout] | None,
    method: str,
) -> DispatchPlan:
    if layouts is None or len(layouts) != world_size:
        raise ValueError(f"DP_COMPUTE {method}: need one RankLayout per rank ({world_size}), got {layouts!r}")
    dp_size = _check_layouts(layouts, method)
    batches = [a for a in (*args, *kwargs.values()) if isinstance(a, Batch)]
    if not batches:
        raise TypeError(f"DP_COMPUTE {method}: needs at least one Batch argument to split by data-parallel rank")
    sizes = {len(b) for b in batches}
    if len(sizes) != 1:
        raise ValueError(f"DP_COMPUTE {method}: Batch arguments have different lengths {sorted(sizes)}")
    if 0 in sizes:
        raise ValueError(f"DP_COMPUTE {method}: cannot split an empty Batch over {dp_size} data-parallel ranks")

    pad_size = 0

    def shares(value: Any) -> list[Any]:
        nonlocal pad_size
        if not isinstance(value, Batch):
            return [value] * dp_size
        padded, pad_size = value.pad_to_multiple(dp_size)
        return padded.chunk(dp_size)

    arg_shares = [shares(a) for a in args]
    kwarg_shares = {k: shares(v) for k, v in kwargs.items()}
    calls, collect_from = [], [0] * dp_size
    for rank, layout in enumerate(layouts):
        d = layout.dp_rank
        if layout.is_collect:
            collect_from[d] = len(calls)
        calls.append(Call(rank, tuple(s[d] for s in arg_shares), {k: s[d] for k, s in kwarg_shares.items()}))
    return DispatchPlan(Dispatch.DP_COMPUTE, calls, collect_from, pad_size)


def _check_layouts(layouts: Sequence[RankLayout], method: str) -> int:
    """The DP size, after checking every DP group exists and has exactly one collect rank."""
    dp_sizes = {layout.dp_size for layout in layouts}
    if len(dp_sizes) != 1:
        raise ValueError(f"DP_COMPUTE {method}: ranks disagree on dp_size: {sorted(dp_sizes)}")
    dp_size = dp_sizes.pop()
    collectors: dict[int, list[int]] = {d: [] for d in range(dp_size)}
    for rank, layout in enumerate(layouts):
        if layout.dp_rank not in collectors:
            raise ValueError(f"DP_COMPUTE {method}: rank {rank} has dp_rank {layout.dp_rank} outside [0, {dp_size})")
        if layout.is_collect:
            collectors[layout.dp_rank].append(rank)
    bad = {d: ranks for d, ranks in collectors.items() if len(ranks) != 1}
    if bad:
        raise ValueError(
            f"DP_COMPUTE {method}: each DP group needs exactly one collect rank; got {bad} (dp_rank: ranks)"
        )
    return dp_size
