"""The reward-function API, its loader, the built-in rewards and the kinds of reward.

The trainer loads the configured function once with :func:`load_reward_function` (``worker.reward.*``: a spec
``path/to/file.py:fn`` or ``package.module:fn``, ``reward_type`` ``sequential`` or ``batch``, and
``reward_function_kwargs``) and calls the returned :class:`RewardFunction` on a list of :class:`RewardInput` to get
one validated :class:`RewardScore` per input. The default, ``longrl.rewards.r1v:compute_score``, scores the
``<think>``/``<answer>`` format and the answer's correctness. ``worker.reward.kind`` picks what the trainer calls
around it (:mod:`longrl.rewards.kinds`: the function alone, or with the open-ended judge). No module here imports
torch, torch.distributed or Ray: rewards run wherever the decoded responses are.
"""

from longrl.rewards.loader import (
    RewardFunction,
    RewardFunctionError,
    RewardTypeError,
    load_reward_function,
)
from longrl.rewards.types import Reward, RewardInput, RewardScore

__all__ = [
    "Reward",
    "RewardFunction",
    "RewardFunctionError",
    "RewardTypeError",
    "RewardInput",
    "RewardScore",
    "load_reward_function",
]
