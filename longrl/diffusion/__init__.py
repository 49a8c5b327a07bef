"""Flow-GRPO for image/video generators (issue 11, in progress): the SDE sampler with per-step log-probs and the
flow-matching transformer families (SD3, Wan) through diffusers. No Ray, no torch.distributed here."""

from longrl.diffusion.models import FLOW_FAMILIES, FlowFamily, SD3Family, TextConditioning, WanFamily
from longrl.diffusion.sde import SDEStep, flow_sigmas, noise_level, sde_step

__all__ = ["FLOW_FAMILIES", "FlowFamily", "SD3Family", "SDEStep", "TextConditioning", "WanFamily", "flow_sigmas",
           "noise_level", "sde_step"]
