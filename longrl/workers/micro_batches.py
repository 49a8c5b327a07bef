"""Micro-batches of a rank's rows: fixed in size, or packed under a token budget (``worker.actor.dynamic_batching``),
and the share of a mini-batch's loss each one carries.

Dynamic batching, as EasyR1 sizes it: the budget is ``micro_batch_size x`` the batch's padded width (prompt +
response), and rows are packed by their real token counts (longest first, into the least-filled micro-batch that
still fits), so many short rows share one forward where fixed micro-batches would run several. Every rank of the
default process group runs the same number of micro-batches (FSDP's collectives need it): a rank with fewer splits its
largest ones. With ``shared_prefix`` a prompt's rows stay together, so its prompt is still scored once.

The loss share makes the sum over micro-batches equal the mini-batch's loss whatever the grouping: per token for
``token-mean``, per response (with at least one valid token) for the sequence means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist


def fixed_micro_batches(rows: int, size: int) -> list[np.ndarray]:
    """Consecutive slices of ``size`` rows (the last may be shorter)."""
    return [np.arange(start, min(start + size, rows)) for start in range(0, rows, size)]


def pack_by_tokens(costs: Sequence[int], budget: int) -> list[list[int]]:
    """Units (their token ``costs``) packed under ``budget`` tokens: largest first, each into the least-filled bin
    that still fits it, else a new bin. A unit over the budget gets a bin of its own."""
    bins: list[list[int]] = []
    loads: list[int] = []
    for unit in sorted(range(len(costs)), key=lambda u: (-costs[u], u)):
        fitting = [b for b in range(len(bins)) if loads[b] + costs[unit] <= budget]
        if fitting:
            target = min(fitting, key=lambda b: (loads[b], b))
            bins[target].append(unit)
            loads[target] += costs[unit]
        else:
            bins.append([unit])
            loads.append(costs[unit])
    return bins


def split_to_count(bins: list[list[int]], costs: Sequence[int], count: int) -> list[list[int]]:
    """``bins`` split until there are ``count``: each time the costliest bin of two or more units is halved by cost
    (splitting only lowers loads, so the budget still holds)."""
    bins = [list(b) for b in bins]

    def load(units: list[int]) -> int:
        return sum(costs[u] for u in units)

    while len(bins) < count:
        splittable = [b for b in bins if len(b) > 1]
        if not splittable:
            raise ValueError(f"cannot make {count} micro-batches from {len(bins)} units on this rank: the ranks "
                             "hold different numbers of rows")
        largest = max(splittable, key=load)
        bins.remove(largest)
        halves: tuple[list[int], list[int]] = ([], [])
        for unit in sorted(largest, key=lambda u: -costs[u]):
            min(halves, key=lambda half: (load(half), len(half))).append(unit)
        bins += list(halves)
    return bins


def _agreed_count(count: int) -> int:
    """The largest ``count`` over the default process group (itself without one)."""
    if not dist.is_available() or not dist.is_initialized():
        return count
    tensor = torch.tensor([count], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def token_budget_micro_batches(attention_mask: torch.Tensor, size: int,
                               groups: Sequence | None = None) -> list[np.ndarray]:
    """Row indices of each micro-batch under a budget of ``size x attention_mask.shape[1]`` tokens.

    ``groups`` (one key per row, e.g. the prompt's uid) keeps rows with the same key in one micro-batch. The
    micro-batches come out in order of their first row, each row list sorted, so the result does not depend on the
    packing order where that does not matter.
    """
    lengths = attention_mask.sum(-1).tolist()
    keys = list(groups) if groups is not None else list(range(len(lengths)))
    units: dict = {}
    for row, key in enumerate(keys):
        units.setdefault(key, []).append(row)
    members = list(units.values())
    costs = [sum(lengths[row] for row in unit) for unit in members]
    bins = pack_by_tokens(costs, size * attention_mask.shape[1])
    bins = split_to_count(bins, costs, _agreed_count(len(bins)))
    batches = [np.array(sorted(row for unit in b for row in members[unit]), dtype=np.int64) for b in bins]
    return sorted(batches, key=lambda rows: rows[0])


def loss_share(micro_mask: torch.Tensor, mini_mask: torch.Tensor, loss_agg_mode: str) -> float:
    """The weight of a micro-batch's aggregated loss in its mini-batch's: its share of the valid tokens for
    ``token-mean``, of the responses with a valid token for the sequence means."""
    if loss_agg_mode == "token-mean":
        return float(micro_mask.sum()) / max(float(mini_mask.sum()), 1.0)
    return float((micro_mask.sum(-1) > 0).sum()) / max(float((mini_mask.sum(-1) > 0).sum()), 1.0)
