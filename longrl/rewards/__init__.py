"""The reward-function API, its loader and the built-in rewards.

The trainer loads the configured function once with :func:`load_reward_function` (``worker.reward.*``: a spec
``path/to/file.py:fn`` or ``package.module:fn``, ``reward_type`` ``sequential`` or ``batch``, and
``reward_function_kwargs``) and calls the returned :class:`RewardFunction` on a list of :class:`RewardInput` to get
one validated :class:`RewardScore` per input. The default, ``longrl.rewards.r1v:compute_score``, scores the
``<think>``/``<answer>`` format and the answer's correctness. No module here imports torch,
torch.distributed or Ray: rewards run wherever the decoded responses are.
"""

from longrl.rewards.loader import (
    REWARD_TYPES,
    RewardFunction,
    RewardFunctionError,
    RewardTypeError,
    load_reward_function,
)
from longrl.rewards.types import RewardInput, RewardScore

DEFAULT_REWARD_FUNCTION = "longrl.rewards.r1v:compute_score"

__all__ = [
    "DEFAULT_REWARD_FUNCTION",
    "REWARD_TYPES",
    "RewardFunction",
    "RewardFunctionError",
    "RewardTypeError",
    "RewardInput",
    "RewardScore",
    "load_reward_function",
]
