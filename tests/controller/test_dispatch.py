"""Dispatch planning and collecting, checked by hand without Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longrl.controller.decorators import Dispatch, Execute, register, registered_methods
from longrl.controller.dispatch import RankLayout, collect, plan_dispatch
from longrl.controller.worker import Worker
from longrl.protocol import Batch


def _batch(n: int) -> Batch:
    return Batch.from_dict({"x": torch.arange(n, dtype=torch.float32)}, {"uid": [f"u{i}" for i in range(n)]})


def _sp_layout(world: int, sp: int) -> list[RankLayout]:
    return [RankLayout(r // sp, world // sp, r % sp == 0) for r in range(world)]


def test_dp_compute_sends_each_chunk_to_its_whole_sp_group_and_collects_once() -> None:
    batch = _batch(5)
    plan = plan_dispatch(Dispatch.DP_COMPUTE, 4, (batch, 7), {"b": batch}, _sp_layout(4, 2))
    # 5 rows padded to 6 (row 0 repeated), chunks [0, 1, 2] and [3, 4, 0]; ranks 0,1 -> chunk 0, ranks 2,3 -> chunk 1.
    assert plan.pad_size == 1
    chunks = [c.args[0].non_tensors["uid"].tolist() for c in plan.calls]
    assert chunks == [["u0", "u1", "u2"]] * 2 + [["u3", "u4", "u0"]] * 2
    assert all(c.args[1] == 7 and c.kwargs["b"] is not None for c in plan.calls)
    assert plan.collect_from == [0, 2]
    results = [Batch.from_dict({"r": torch.full((3,), float(c.rank))}) for c in plan.calls]
    assert collect(plan, results).tensors["r"].tolist() == [0, 0, 0, 2, 2]
    assert collect(plan, ["a", "b", "c", "d"]) == ["a", "c"]


def test_one_to_all_and_rank_zero_plans() -> None:
    one = plan_dispatch(Dispatch.ONE_TO_ALL, 3, (1,), {"k": 2})
    assert [(c.rank, c.args, c.kwargs) for c in one.calls] == [(r, (1,), {"k": 2}) for r in range(3)]
    assert collect(one, [10, 11, 12]) == [10, 11, 12]
    zero = plan_dispatch(Dispatch.RANK_ZERO, 3, (), {})
    assert [c.rank for c in zero.calls] == [0] and collect(zero, ["only"]) == "only"


@pytest.mark.parametrize(
    ("layouts", "match"),
    [
        ([RankLayout(0, 2, True), RankLayout(1, 2, False)], "exactly one collect rank"),
        ([RankLayout(0, 1, True), RankLayout(0, 2, True)], "disagree on dp_size"),
        ([RankLayout(0, 1, True), RankLayout(3, 1, False)], "outside"),
    ],
)
def test_bad_layouts_are_named(layouts: list[RankLayout], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plan_dispatch(Dispatch.DP_COMPUTE, 2, (_batch(4),), {}, layouts, method="f")


def test_dp_compute_needs_a_batch_argument() -> None:
    with pytest.raises(TypeError, match="DP_COMPUTE f: needs at least one Batch"):
        plan_dispatch(Dispatch.DP_COMPUTE, 2, (np.ones(3),), {}, _sp_layout(2, 1), method="f")


def test_register_marks_and_worker_layout_defaults() -> None:
    class W(Worker):
        sp_size = 2

        @register(Dispatch.DP_COMPUTE, Execute.ASYNC)
        def f(self) -> None: ...

        def plain(self) -> None: ...

    specs = registered_methods(W)
    assert list(specs) == ["f"] and specs["f"].dispatch is Dispatch.DP_COMPUTE and specs["f"].execute is Execute.ASYNC
    w = W()  # outside Ray: rank 0 of 1, so sp_size=2 cannot divide the world
    assert (w.rank, w.world_size, w.local_rank, w.master_port) == (0, 1, 0, None)
    with pytest.raises(ValueError, match="sp_size=2 does not divide world_size=1"):
        w.dispatch_layout("f")
