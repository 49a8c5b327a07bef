"""Long-RL's ``open_ended_reward``: rows with options keep the rule reward, rows without go to the LLM judge.

The rule reward still runs on every row (its ``format`` part applies to open-ended answers too). For an open-ended
row the judge compares the ``<answer>`` content (the whole response when there is no tag) with the reference, and
its verdict replaces ``accuracy``: ``overall = (1 - format_weight) * accuracy + format_weight * format`` as in r1v
(``overall = accuracy`` when the rule reward reports no ``format``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from longrl.rewards.judge import JudgeItem, JudgeUnavailable, OpenAIJudge
from longrl.rewards.loader import RewardFunctionError
from longrl.rewards.r1v import DEFAULT_FORMAT_WEIGHT, extract_answer
from longrl.rewards.types import Reward, RewardInput, RewardScore

if TYPE_CHECKING:
    from longrl.config.schema import RewardConfig

__all__ = ["OpenEndedReward", "open_ended_reward"]


class OpenEndedReward:
    """Callable like a :class:`~longrl.rewards.RewardFunction`: a list of reward inputs -> one score dict each."""

    def __init__(self, rule: Reward, judge: OpenAIJudge, format_weight: float = DEFAULT_FORMAT_WEIGHT):
        self.rule, self.judge, self.format_weight = rule, judge, format_weight

    def __call__(self, reward_inputs: Sequence[RewardInput]) -> list[RewardScore]:
        scores = [dict(score) for score in self.rule(reward_inputs)]
        open_rows = [i for i, item in enumerate(reward_inputs) if not item.get("options")]
        items = [JudgeItem(str(reward_inputs[i]["problem"]), str(reward_inputs[i]["ground_truth"]),
                           extract_answer(reward_inputs[i]["response"]) or reward_inputs[i]["response"])
                 for i in open_rows]
        try:
            verdicts = self.judge.score(items)
        except JudgeUnavailable as error:
            raise RewardFunctionError(f"open-ended judge ({self.judge.base_url}): {error}") from error
        for row, verdict in zip(open_rows, verdicts):
            score = scores[row]
            score["accuracy"] = verdict
            score["overall"] = ((1 - self.format_weight) * verdict + self.format_weight * score["format"]
                                if "format" in score else verdict)
        return scores

    def drain_metrics(self) -> dict[str, float]:
        return self.judge.drain_counts()

    def close(self) -> None:
        close = getattr(self.rule, "close", None)
        if close is not None:
            close()


def open_ended_reward(function: Reward, reward: RewardConfig) -> OpenEndedReward:
    """The ``open_ended`` kind (``worker.reward.kind``): ``function`` for every row, the judge of
    ``worker.reward.judge`` for the accuracy of rows without options."""
    return OpenEndedReward(function, OpenAIJudge(reward.judge))
