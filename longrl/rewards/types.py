"""The two dictionaries a reward function trades with the trainer.

They are plain ``TypedDict`` s, not classes, because reward files written for EasyR1 / Long-RL index them as
dicts (``reward_input["response"]``) and return dict literals; typing them lets our code be checked without
asking users to import anything from longrl.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, TypedDict


class _RequiredRewardInput(TypedDict):
    response: str
    response_length: int
    ground_truth: str


class RewardInput(_RequiredRewardInput, total=False):
    """One decoded rollout response and what it is graded against.

    ``response`` is the detokenised response, ``response_length`` its number of valid tokens (for length
    shaping), ``ground_truth`` the row's answer as a string. ``problem``, ``data_type``, ``problem_type`` and
    ``options`` (the choices of a multiple-choice row, None for an open-ended one) are passed through only when the
    dataset row has them, so a reward function must read them with ``.get``.
    """

    problem: str
    data_type: str
    problem_type: str
    options: list[str] | None


class _RequiredRewardScore(TypedDict):
    overall: float


class RewardScore(_RequiredRewardScore, total=False):
    """What a reward function returns for one response.

    ``overall`` is required: it is the scalar reward placed on the response's last token. Every other key
    (conventionally ``format`` and ``accuracy``, but any name is allowed at run time) must also be a finite number
    and is logged as a metric; a ``TypedDict`` cannot express "any further float keys", so only
    the conventional ones are listed here.
    """

    format: float
    accuracy: float


SequentialRewardFunction = Callable[..., RewardScore]
"""``compute_score(reward_input: RewardInput, **kwargs) -> RewardScore``: one call per response."""

BatchRewardFunction = Callable[..., list[RewardScore]]
"""``compute_score(reward_inputs: list[RewardInput], **kwargs) -> list[RewardScore]``: one call per batch."""

Reward = Callable[[Sequence[RewardInput]], list[RewardScore]]
"""What the trainer calls, whatever the kind of reward: inputs -> one validated score per input."""
