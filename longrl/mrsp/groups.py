"""Sequence-parallel groups inside data-parallel groups, carved out of the default process group.

Ranks are laid out SP-contiguous, the same layout the controller's ``DP_COMPUTE`` dispatch assumes
(``Worker.dispatch_layout``): with ``sp_size`` ranks per group, ranks ``[d * sp_size, (d + 1) * sp_size)`` form
data-parallel group ``d`` and cooperate on the same share of the batch. FSDP still shards parameters over the whole
world; only activations (frames in stage 1, sequence positions in stage 2) are split inside an SP group.

With ``sp_size == 1`` there is no SP group at all (``group is None``): every MR-SP function then degenerates to
the single-rank computation without a collective, so SP size 1 is exactly the path without MR-SP.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

__all__ = ["SequenceParallelGroups", "build_sp_groups"]


@dataclass(frozen=True)
class SequenceParallelGroups:
    """This rank's place: its SP group (``None`` when ``sp_size == 1``), SP rank, and data-parallel rank."""

    sp_size: int
    sp_rank: int
    dp_size: int
    dp_rank: int
    group: dist.ProcessGroup | None

    @property
    def enabled(self) -> bool:
        return self.sp_size > 1


def build_sp_groups(sp_size: int) -> SequenceParallelGroups:
    """Create the SP groups of the initialised default group (a collective: every rank must call it).

    Without ``torch.distributed`` initialised, only ``sp_size == 1`` is possible (a single process).
    """
    initialised = dist.is_available() and dist.is_initialized()
    world, rank = (dist.get_world_size(), dist.get_rank()) if initialised else (1, 0)
    if sp_size < 1 or world % sp_size:
        raise ValueError(
            f"worker.actor.ulysses_size={sp_size} must be >= 1 and divide the world size {world} "
            f"(trainer.nnodes x trainer.n_gpus_per_node)"
        )
    group = None
    if sp_size > 1:
        # new_group is collective over the whole world even for groups a rank is not in.
        for start in range(0, world, sp_size):
            ranks = list(range(start, start + sp_size))
            created = dist.new_group(ranks)
            if rank in ranks:
                group = created
    return SequenceParallelGroups(sp_size=sp_size, sp_rank=rank % sp_size, dp_size=world // sp_size,
                                  dp_rank=rank // sp_size, group=group)
