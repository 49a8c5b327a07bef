"""Flow-GRPO's stochastic sampler for flow-matching models: each denoising step is a Gaussian policy action.

A flow-matching model predicts the velocity ``v = eps - x0`` of the path ``x_s = (1 - s) * x0 + s * eps`` (``s`` the
noise level, 1 = pure noise). Its ODE sampler is deterministic, so a sampled image has no likelihood to optimise.
The SDE with the same marginals adds noise of level ``g(s)`` and corrects the drift with the score, which for this
path is ``-(x + (1 - s) * v) / s``::

    dx = [v + g(s)^2 / (2 s) * (x + (1 - s) * v)] ds + g(s) dW,    g(s) = eta * sqrt(s / (1 - s))

An Euler-Maruyama step from ``s`` to ``s_next < s`` (``ds = s_next - s``) is then a Gaussian with

    mean = x + [v + g^2 / (2 s) * (x + (1 - s) * v)] * ds,    std = g * sqrt(-ds)

and the log-density of the step actually taken is the policy's log-prob for that action. It is averaged over the
sample's elements (not summed), which keeps importance ratios of large images in a usable range; the same
convention must be used when the update recomputes it. ``eta = 0`` gives the ODE (Euler) step and no log-prob.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["SDEStep", "flow_sigmas", "noise_level", "sde_step"]

# g(s) diverges at s = 1 (pure noise); the level there is taken at 1 - _EDGE instead.
_EDGE = 1e-2


@dataclass
class SDEStep:
    sample: torch.Tensor  # x at s_next
    log_prob: torch.Tensor  # (batch,) mean log-density of ``sample`` per element
    mean: torch.Tensor
    std: torch.Tensor  # broadcastable against ``sample``: a scalar, or one value per sample


def flow_sigmas(steps: int, shift: float = 1.0) -> torch.Tensor:
    """``steps + 1`` noise levels from 1 down to 0, with SD3's resolution shift ``s' = shift s / (1 + (shift-1) s)``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    s = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return (shift * s / (1 + (shift - 1) * s)).float()


def noise_level(sigma: torch.Tensor, eta: float) -> torch.Tensor:
    """``g(s) = eta * sqrt(s / (1 - s))``, with ``s`` kept at most ``1 - 1e-2``."""
    sigma = sigma.clamp(max=1 - _EDGE)
    return eta * torch.sqrt(sigma / (1 - sigma))


def _per_sample(value: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A noise level as a float32 tensor that broadcasts over ``x``: a scalar stays one, a ``(batch,)`` vector (each
    sample at its own level, as when the update trains different steps of different samples) gains singleton dims."""
    value = torch.as_tensor(value, dtype=torch.float32, device=x.device)
    return value.reshape(-1, *([1] * (x.dim() - 1))) if value.dim() == 1 else value


def sde_step(
    velocity: torch.Tensor,
    sample: torch.Tensor,
    sigma: float | torch.Tensor,
    sigma_next: float | torch.Tensor,
    eta: float,
    generator: torch.Generator | None = None,
    taken: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> SDEStep:
    """One step from ``sigma`` to ``sigma_next`` (scalars, or one per sample): draw it (``taken=None``; from ``noise``
    when given, else from ``generator``) or score the given ``taken`` sample.

    Computed in float32 whatever the model's dtype, so rollout and update log-probs agree.
    """
    v, x = velocity.float(), sample.float()
    s = _per_sample(sigma, x)
    ds = _per_sample(sigma_next, x) - s
    if (ds >= 0).any():
        raise ValueError(f"sde_step must lower the noise level: sigma={s.flatten().tolist()}, "
                         f"sigma_next={(s + ds).flatten().tolist()}")
    g = noise_level(s, eta)
    mean = x + (v + g**2 / (2 * s) * (x + (1 - s) * v)) * ds
    std = g * torch.sqrt(-ds)
    if taken is None:
        if eta == 0:
            return SDEStep(mean, torch.zeros(x.shape[0], device=x.device), mean, std)
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        taken = mean + std * noise.float()
    taken = taken.float()
    if eta == 0:
        raise ValueError("an ODE step (eta=0) is deterministic and has no log-prob")
    per_element = -((taken - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return SDEStep(taken, per_element.flatten(1).mean(1), mean, std)
