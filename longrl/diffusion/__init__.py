"""Flow-GRPO for image and video generators (SD3, Wan through diffusers): the SDE sampler with per-step log-probs,
the family adapters, text encoders, media decoding, the loss and one rank's policy, prompt rows and offline rewards.
No Ray and no torch.distributed here: ``longrl.workers.flow_worker`` shards and checkpoints, ``longrl.trainer.
flow_trainer`` runs the loop."""

from longrl.diffusion.models import FLOW_FAMILIES, FlowFamily, SD3Family, TextConditioning, WanFamily, family_of
from longrl.diffusion.sde import SDEStep, flow_sigmas, noise_level, sde_step

__all__ = ["FLOW_FAMILIES", "FlowFamily", "SD3Family", "SDEStep", "TextConditioning", "WanFamily", "family_of",
           "flow_sigmas", "noise_level", "sde_step"]
