"""The values of config keys whose code lives in rooms that read the config (``rewards/``, ``workers/``).

They are declared here, below those rooms, so that the config's checks and the code read one list and the config
imports none of the rooms it configures.
"""

# worker.reward.reward_type: the reward function scores a whole batch per call, or one sample per call.
REWARD_TYPES = ("batch", "sequential")
# worker.actor.optim.strategy: the optimizers workers/optimizers.py builds.
OPTIMIZER_STRATEGIES = ("adamw", "adamw_bf16")
