"""Stage-1 planning: every temporal slice goes to exactly one rank, in order, balanced by patch count."""

import pytest

from longrl.mrsp import SlicePiece, plan_frame_shards


def _flatten(shards):
    return [(p.video, t) for pieces in shards for p in pieces for t in range(p.t_start, p.t_end)]


@pytest.mark.parametrize("grids,sp", [([(4, 4, 4), (7, 4, 6)], 4), ([(4, 4, 4), (7, 4, 6)], 2),
                                      ([(1, 2, 2)], 4), ([(3, 2, 2), (0, 2, 2), (5, 4, 4)], 3)])
def test_every_slice_once_in_order(grids, sp):
    shards = plan_frame_shards(grids, sp)
    assert len(shards) == sp
    assert _flatten(shards) == [(v, t) for v, (n, _, _) in enumerate(grids) for t in range(n)]


def test_uneven_counts_over_four_ranks_balanced_by_patches():
    # 7 equal slices over 4 ranks: shares of 2, 1, 2, 2 (every rank busy, none more than one slice above another).
    shards = plan_frame_shards([(7, 2, 2)], 4)
    assert [sum(p.t_end - p.t_start for p in s) for s in shards] == [2, 1, 2, 2]
    # A video of 4 slices of 16 patches and one of 7 slices of 24: 232 patches, about 58 per rank.
    shards = plan_frame_shards([(4, 4, 4), (7, 4, 6)], 4)
    assert [sum(p.patches for p in s) for s in shards] == [64, 48, 72, 48]
    assert shards[1] == [SlicePiece(1, 0, 2, 4, 6)]


def test_fewer_slices_than_ranks_leaves_ranks_empty():
    shards = plan_frame_shards([(1, 2, 2)], 4)
    assert sum(bool(s) for s in shards) == 1


def test_bad_sp_size():
    with pytest.raises(ValueError, match="sp_size"):
        plan_frame_shards([(1, 2, 2)], 0)
