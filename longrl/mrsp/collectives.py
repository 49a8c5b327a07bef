"""The collectives MR-SP needs, as autograd functions so the update's gradients are right.

* :func:`gather_rows` — all-gather along dim 0 with a different row count per rank (gloo and NCCL only gather
  equal shapes, so pieces are padded), optionally in ``num_chunks`` rounds to bound the temporary buffers.
  Backward: every rank used the whole gathered tensor, so the gradient of its own rows is the sum of all ranks'
  gradients for them (an all-reduce, then a slice).
* :func:`all_to_all` — Ulysses' exchange: split one dim over the group, concatenate another. It is its own adjoint
  with the two dims swapped.
* :func:`combine_shards` — sum of per-rank partial results (each rank fills only its own entries, zeros elsewhere).
  Every SP rank then computes the same loss from the same combined tensor, and each rank's backward reaches only its
  own sequence positions, so the parameter gradient of the group is the *sum* over its ranks. FSDP averages over
  the whole world (``dp * sp`` ranks) instead of over ``dp``; the backward multiplies by ``sp`` to undo that.

With ``group is None`` (SP size 1) every function returns its input unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = ["all_to_all", "combine_shards", "gather_rows", "gather_sizes"]


def gather_sizes(count: int, group: dist.ProcessGroup | None, device: torch.device) -> list[int]:
    """``count`` of every rank in ``group``, in group-rank order."""
    if group is None:
        return [count]
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, torch.tensor([count], dtype=torch.long, device=device), group=group)
    return [int(size.item()) for size in sizes]


def _gather_rows_forward(local: torch.Tensor, group: dist.ProcessGroup, sizes: list[int], num_chunks: int) -> torch.Tensor:
    tail = local.shape[1:]
    out = local.new_empty((sum(sizes), *tail))
    offsets = [sum(sizes[:r]) for r in range(len(sizes))]
    largest = max(sizes)
    step = -(-largest // max(1, num_chunks)) if largest else 0
    for lo in range(0, largest, step or 1):
        hi = min(lo + step, largest)
        piece = local.new_zeros((hi - lo, *tail))
        own = local[lo:hi]
        piece[: own.shape[0]] = own
        received = [torch.empty_like(piece) for _ in sizes]
        dist.all_gather(received, piece.contiguous(), group=group)
        for rank, (size, offset) in enumerate(zip(sizes, offsets)):
            rows = max(0, min(hi, size) - lo)
            if rows:
                out[offset + lo : offset + lo + rows] = received[rank][:rows]
    return out


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, local: torch.Tensor, group: dist.ProcessGroup, num_chunks: int) -> torch.Tensor:
        sizes = gather_sizes(local.shape[0], group, local.device)
        ctx.group, ctx.sizes, ctx.rank = group, sizes, dist.get_rank(group)
        return _gather_rows_forward(local, group, sizes, num_chunks)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_rows(local: torch.Tensor, group: dist.ProcessGroup | None, num_chunks: int = 1) -> torch.Tensor:
    """Concatenate every rank's ``local`` (any row count, same trailing shape) in group-rank order, on every rank.

    ``num_chunks > 1`` gathers ``1 / num_chunks`` of the largest piece per round: the padded receive buffers shrink
    by that factor (peak ``out + out / num_chunks`` instead of about ``2 * out``) for ``num_chunks`` round trips.
    The result is identical either way.
    """
    if group is None:
        return local
    if num_chunks < 1:
        raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
    return _GatherRows.apply(local, group, num_chunks)


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: dist.ProcessGroup, scatter_dim: int, gather_dim: int) -> torch.Tensor:
        ctx.group, ctx.scatter_dim, ctx.gather_dim = group, scatter_dim, gather_dim
        return _exchange(x, group, scatter_dim, gather_dim)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        return _exchange(grad, ctx.group, ctx.gather_dim, ctx.scatter_dim), None, None, None


def _exchange(x: torch.Tensor, group: dist.ProcessGroup, scatter_dim: int, gather_dim: int) -> torch.Tensor:
    size = dist.get_world_size(group)
    if x.shape[scatter_dim] % size:
        raise ValueError(f"all_to_all: dim {scatter_dim} of shape {tuple(x.shape)} does not split over {size} ranks")
    send = torch.stack(torch.chunk(x, size, dim=scatter_dim)).contiguous()  # (size, ...) one piece per peer
    received = torch.empty_like(send)
    dist.all_to_all_single(received, send, group=group)
    return torch.cat(received.unbind(0), dim=gather_dim)


def all_to_all(x: torch.Tensor, group: dist.ProcessGroup | None, scatter_dim: int, gather_dim: int) -> torch.Tensor:
    """Split ``x`` along ``scatter_dim`` (piece ``j`` to rank ``j``), concatenate what arrives along ``gather_dim``."""
    if group is None:
        return x
    return _AllToAll.apply(x, group, scatter_dim, gather_dim)


class _CombineShards(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, partial: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
        ctx.size = dist.get_world_size(group)
        total = partial.contiguous().clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.size, None


def combine_shards(partial: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
    """Sum of the group's ``partial`` tensors (each rank's nonzero entries disjoint), same on every rank."""
    if group is None:
        return partial
    return _CombineShards.apply(partial, group)
