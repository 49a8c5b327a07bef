"""Generation in rounds until a step has its prompts: EasyR1's ``data.mini_rollout_batch_size`` and DAPO's dynamic
sampling in one loop.

A round draws one loader batch (``data.mini_rollout_batch_size`` prompts, else ``data.rollout_batch_size``) and
generates ``n`` responses per prompt. With online filtering each round is scored and only its informative groups are
kept; rounds go on until ``data.rollout_batch_size`` groups are kept (or ``algorithm.max_try_make_batch`` rounds
ran). The caller cuts the kept rows to ``data.rollout_batch_size x n``.
"""

from __future__ import annotations

from collections.abc import Callable

from longrl.protocol import Batch

# A round (index from 1) -> its rollout rows; a round's rollout -> the rows it keeps (they may carry added fields).
RoundFn = Callable[[int], Batch]
KeepFn = Callable[[Batch], Batch]


def collect_rounds(generate_round: RoundFn, keep: KeepFn | None, groups_wanted: int, n: int,
                   max_rounds: int, barren_limit: int, nothing_kept: Callable[[int], str]) -> tuple[list[Batch], int]:
    """The rollouts kept over rounds until ``groups_wanted`` groups of ``n`` rows are in, and the number of rounds.

    Without ``keep`` every round counts in full and the limits do not apply (the number of rounds is
    ``ceil(groups_wanted / round size)``). With ``keep`` at most ``max_rounds`` rounds run (``<= 0``: no limit, as in
    EasyR1); ending short of ``groups_wanted`` is not an error (the step trains on fewer groups), but keeping no group
    at all by the last round, or in ``barren_limit`` rounds (a whole epoch's worth: the filter rejects everything),
    raises ``RuntimeError(nothing_kept(rounds))``.
    """
    kept: list[Batch] = []
    kept_groups, rounds = 0, 0
    while kept_groups < groups_wanted:
        rounds += 1
        rollout = generate_round(rounds)
        if keep is not None:
            rollout = keep(rollout)
        kept.append(rollout)
        kept_groups += len(rollout) // n
        if keep is None:
            continue
        last_round = 0 < max_rounds <= rounds
        if kept_groups == 0 and (last_round or rounds >= barren_limit):
            raise RuntimeError(nothing_kept(rounds))
        if last_round:
            break
    return kept, rounds
