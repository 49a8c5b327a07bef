"""The values of config keys whose code lives in rooms that read the config (``rewards/``, ``workers/``).

They are declared here, below those rooms, so that the config's checks and the code read one list and the config
imports none of the rooms it configures. The two registries name their entries as ``"module:attribute"`` strings,
imported only when chosen (:func:`pkgutil.resolve_name`): choosing ``hf`` never imports vLLM.
"""

from __future__ import annotations

from pkgutil import resolve_name
from typing import Any

# worker.reward.reward_type: the reward function scores a whole batch per call, or one sample per call.
REWARD_TYPES = ("batch", "sequential")
# worker.actor.optim.strategy: the optimizers workers/optimizers.py builds.
OPTIMIZER_STRATEGIES = ("adamw", "adamw_bf16")
# worker.rollout.name -> the engine class (a RolloutEngine, built by its from_config). A new engine is its module and
# a line here.
ROLLOUT_ENGINES = {
    "hf": "longrl.workers.rollout.hf:HFRollout",
    "vllm": "longrl.workers.rollout.vllm:VLLMRollout",
}
# worker.reward.kind -> its builder (longrl.rewards.kinds): how the configured reward function becomes the trainer's
# reward. A new kind of reward is its module and a line here.
REWARD_KINDS = {
    "function": "longrl.rewards.kinds:function_reward",
    "open_ended": "longrl.rewards.open_ended:open_ended_reward",
}


def resolve_choice(registry: dict[str, str], key: str, value: str) -> Any:
    """What ``registry`` names for the config value ``key=value``, imported now; an unknown value raises
    ``ValueError`` listing the registered ones."""
    if value not in registry:
        raise ValueError(f"{key}={value!r} is not one of {sorted(registry)}")
    return resolve_name(registry[value])
