"""Generation in rounds (EasyR1's data.mini_rollout_batch_size) with and without DAPO's online filter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longrl.algos import online_filter_mask
from longrl.protocol import Batch
from longrl.trainer.dataloader import PromptLoader
from longrl.trainer.sampling import collect_rounds

N = 4


def _rounds(loader: PromptLoader, calls: list[list[int]]):
    """A round: the loader's next prompts, each with N responses scored so that only prompts divisible by 3 have a
    mixed group (2 of 4 right); the others are all right (even) or all wrong (odd)."""

    def generate_round(index: int) -> Batch:
        prompts = loader.next_batch()
        calls.append(list(prompts))
        rows = [p for p in prompts for _ in range(N)]
        scores = [float(j < 2) if p % 3 == 0 else float(p % 2 == 0) for p in prompts for j in range(N)]
        return Batch.from_dict({"scores": torch.tensor(scores)}, {"uid": np.array(rows)})

    return generate_round


def _nothing_kept(rounds: int) -> str:
    return f"kept no group in {rounds} rounds"


def _keep(rollout: Batch) -> Batch:
    return rollout[online_filter_mask({"overall": rollout.tensors["scores"]}, rollout.non_tensors["uid"])]


def test_rounds_of_the_mini_size_run_until_enough_groups_pass_the_filter():
    loader = PromptLoader(list(range(60)), batch_size=4, seed=0, shuffle=False)
    calls: list[list[int]] = []
    kept, rounds = collect_rounds(_rounds(loader, calls), _keep, groups_wanted=5, n=N, max_rounds=20,
                                  barren_limit=15, nothing_kept=_nothing_kept)
    # Kept groups per round of 4 prompts: {0,3} {6} {9} {12,15} -> 2, 1, 1, 2: the 5th group arrives in round 4.
    assert rounds == 4 and calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    uids = np.concatenate([batch.non_tensors["uid"] for batch in kept])
    assert list(uids[::N]) == [0, 3, 6, 9, 12, 15] and len(uids) == 6 * N  # the caller cuts to 5 x N rows


def test_without_a_filter_rounds_cover_the_step_once():
    loader = PromptLoader(list(range(60)), batch_size=3, seed=0, shuffle=False)
    calls: list[list[int]] = []
    kept, rounds = collect_rounds(_rounds(loader, calls), None, groups_wanted=8, n=N, max_rounds=1,
                                  barren_limit=1, nothing_kept=_nothing_kept)
    assert rounds == 3 and sum(len(batch) for batch in kept) == 9 * N  # ceil(8 / 3) rounds, max_rounds ignored


def test_the_round_limit_ends_short_or_fails_when_nothing_passed():
    loader = PromptLoader(list(range(60)), batch_size=2, seed=0, shuffle=False)
    kept, rounds = collect_rounds(_rounds(loader, []), _keep, groups_wanted=5, n=N, max_rounds=3, barren_limit=30,
                                  nothing_kept=_nothing_kept)
    assert rounds == 3 and sum(len(batch) for batch in kept) // N == 2  # groups 0 and 3
    loader = PromptLoader([1, 2, 4, 5, 7, 8], batch_size=2, seed=0, shuffle=False)
    with pytest.raises(RuntimeError, match="kept no group in 2 rounds"):
        collect_rounds(_rounds(loader, []), _keep, groups_wanted=1, n=N, max_rounds=2, barren_limit=3,
                       nothing_kept=_nothing_kept)


def test_with_no_round_limit_a_filter_that_keeps_nothing_fails_after_the_barren_limit():
    loader = PromptLoader([1, 2, 4, 5, 7, 8] * 5, batch_size=2, seed=0, shuffle=False)
    calls: list[list[int]] = []
    with pytest.raises(RuntimeError, match="kept no group in 3 rounds"):
        collect_rounds(_rounds(loader, calls), _keep, groups_wanted=1, n=N, max_rounds=0, barren_limit=3,
                       nothing_kept=_nothing_kept)
    assert len(calls) == 3
