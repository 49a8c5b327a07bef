"""The trainer's reward by kind (``worker.reward.kind``), through the registry
:data:`longrl.config.choices.REWARD_KINDS`.

A kind's builder takes the loaded reward function (``worker.reward.reward_function``, in its worker processes when
asked) and the ``worker.reward`` section, and returns what the trainer calls: reward inputs -> one score each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from longrl.config.choices import REWARD_KINDS, resolve_choice
from longrl.rewards.types import Reward

if TYPE_CHECKING:
    from longrl.config.schema import RewardConfig

__all__ = ["build_reward_kind", "function_reward"]


def function_reward(function: Reward, reward: RewardConfig) -> Reward:
    """The ``function`` kind: the reward function grades every row."""
    return function


def build_reward_kind(function: Reward, reward: RewardConfig) -> Reward:
    """The reward of kind ``reward.kind`` over ``function``; an unknown kind raises ``ValueError`` naming the known."""
    return resolve_choice(REWARD_KINDS, "worker.reward.kind", reward.kind)(function, reward)
