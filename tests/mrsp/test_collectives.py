"""The MR-SP collectives on 3 gloo ranks: variable-size gathering (chunked or not), all-to-all, their gradients."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from longrl.mrsp import all_to_all, combine_shards, gather_rows

from mrsp.spawn import run_on_ranks

ROWS = (5, 0, 3)  # rank 1 contributes nothing


def _collectives_on_rank() -> dict:
    rank, world = dist.get_rank(), dist.get_world_size()
    group = dist.new_group(list(range(world)))
    local = (torch.arange(ROWS[rank] * 2, dtype=torch.float).view(-1, 2) + 100 * rank).requires_grad_()
    gathered = {chunks: gather_rows(local, group, chunks) for chunks in (1, 2, 4, 7)}
    # Every rank weighs the gathered rows differently; the gradient of the local rows sums those weights.
    weights = torch.arange(sum(ROWS) * 2, dtype=torch.float).view(-1, 2) * (rank + 1)
    (gathered[2] * weights).sum().backward()
    x = (torch.arange(2 * 6 * 4, dtype=torch.float).view(2, 6, 4) + 1000 * rank).requires_grad_()
    swapped = all_to_all(x, group, scatter_dim=1, gather_dim=2)  # (2, 6/world, 4*world)
    back = all_to_all(swapped, group, scatter_dim=2, gather_dim=1)
    (swapped * (rank + 1)).sum().backward()
    partial = torch.zeros(world, requires_grad=True)
    combined = combine_shards(partial + torch.eye(world)[rank] * (rank + 1), group)
    combined.sum().backward()
    return {"gathered": {k: v.detach() for k, v in gathered.items()}, "local_grad": local.grad,
            "swapped": swapped.detach(), "back": back.detach(), "x_grad": x.grad, "combined": combined.detach(),
            "partial_grad": partial.grad}


@pytest.mark.slow
def test_collectives_values_and_gradients():
    results = run_on_ranks(3, _collectives_on_rank)
    expected = torch.cat([torch.arange(n * 2, dtype=torch.float).view(-1, 2) + 100 * r for r, n in enumerate(ROWS)])
    weights_sum = torch.arange(sum(ROWS) * 2, dtype=torch.float).view(-1, 2) * (1 + 2 + 3)
    for rank, result in enumerate(results):
        for chunks, gathered in result["gathered"].items():
            assert torch.equal(gathered, expected), f"rank {rank}, {chunks} chunk(s)"
        start = sum(ROWS[:rank])
        assert torch.equal(result["local_grad"], weights_sum[start : start + ROWS[rank]])
        # Rank r holds heads [2r, 2r+2) of every rank's sequence block, blocks concatenated in rank order.
        xs = [torch.arange(48, dtype=torch.float).view(2, 6, 4) + 1000 * r for r in range(3)]
        assert torch.equal(result["swapped"], torch.cat([x[:, 2 * rank : 2 * rank + 2] for x in xs], dim=2))
        assert torch.equal(result["back"], xs[rank])
        # d/dx of sum over ranks r of (r+1) * swapped_r: each element of x goes to exactly one rank.
        owner = torch.arange(6).div(2, rounding_mode="floor") + 1
        assert torch.equal(result["x_grad"], owner.view(1, 6, 1).float().expand(2, 6, 4))
        assert torch.equal(result["combined"], torch.tensor([1.0, 2.0, 3.0]))
        assert torch.equal(result["partial_grad"], torch.full((3,), 3.0))  # x group size, undone by FSDP's mean
