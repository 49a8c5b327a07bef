"""Flow-GRPO: group-relative policy optimisation of a flow-matching generator over its SDE denoising steps.

Rollout: ``n`` SDE trajectories per prompt (:func:`sample_trajectories`), each step's log-prob recorded. Reward:
one score per sample on the final media. Advantage: GRPO's group normalisation over a prompt's ``n`` samples, shared
by all of the sample's steps. Update: the PPO-clip loss of :mod:`longrl.algos` with the denoising steps in place of
tokens (optionally a random subset of them per sample, ``timestep_fraction``), plus Flow-GRPO's KL to the frozen
reference: between the two Gaussian steps of equal std it is ``|mean - mean_ref|^2 / (2 std^2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from longrl.algos import compute_policy_loss
from longrl.algos.advantages import compute_grpo_outcome_advantage
from longrl.diffusion.models import FlowFamily, TextConditioning
from longrl.diffusion.sde import sde_step

__all__ = ["FlowGRPOConfig", "Trajectories", "flow_grpo_loss", "group_advantages", "sample_trajectories"]


@dataclass
class FlowGRPOConfig:
    eta: float = 0.7  # SDE noise level
    clip_ratio: float = 1e-4  # Flow-GRPO clips the per-step ratio tightly: steps are many and correlated
    kl_coef: float = 0.0
    timestep_fraction: float = 1.0  # share of a trajectory's steps trained on


@dataclass
class Trajectories:
    states: torch.Tensor  # (T + 1, b, ...): x at each noise level, pure noise first
    log_probs: torch.Tensor  # (b, T)
    sigmas: torch.Tensor  # (T + 1,)


@torch.no_grad()
def sample_trajectories(flow: FlowFamily, model: torch.nn.Module, text: TextConditioning, noise: torch.Tensor,
                        sigmas: torch.Tensor, eta: float, generator: torch.Generator | None = None) -> Trajectories:
    """SDE sampling from ``noise`` along ``sigmas``; ``eta = 0`` samples the ODE (no log-probs)."""
    states, log_probs = [noise], []
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        step = sde_step(flow.velocity(model, states[-1], s, text), states[-1], s, s_next, eta, generator=generator)
        states.append(step.sample.to(noise.dtype))
        log_probs.append(step.log_prob)
    return Trajectories(torch.stack(states), torch.stack(log_probs, dim=1), sigmas)


def group_advantages(scores: torch.Tensor, prompt_ids: np.ndarray, steps: int) -> torch.Tensor:
    """GRPO advantages (b,) of the final-media ``scores``, broadcast over the ``steps`` denoising steps: (b, steps)."""
    rewards = torch.zeros(scores.shape[0], steps)
    rewards[:, -1] = scores
    advantages, _ = compute_grpo_outcome_advantage(rewards, torch.ones_like(rewards), prompt_ids)
    return advantages


def flow_grpo_loss(flow: FlowFamily, model: torch.nn.Module, text: TextConditioning, rollout: Trajectories,
                   advantages: torch.Tensor, steps: list[int], cfg: FlowGRPOConfig,
                   reference: torch.nn.Module | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss over denoising ``steps`` of the stored trajectories (gradients flow into ``model``)."""
    new_log_probs, kl_terms = [], []
    for t in steps:
        state, s, s_next = rollout.states[t], rollout.sigmas[t], rollout.sigmas[t + 1]
        step = sde_step(flow.velocity(model, state, s, text), state, s, s_next, cfg.eta, taken=rollout.states[t + 1])
        new_log_probs.append(step.log_prob)
        if reference is not None and cfg.kl_coef > 0:
            with torch.no_grad():
                ref = sde_step(flow.velocity(reference, state, s, text), state, s, s_next, cfg.eta,
                               taken=rollout.states[t + 1])
            kl_terms.append(((step.mean - ref.mean) ** 2).flatten(1).mean(1) / (2 * step.std**2))
    log_probs = torch.stack(new_log_probs, dim=1)
    index = torch.tensor(steps)
    mask = torch.ones_like(log_probs)
    loss, metrics = compute_policy_loss(rollout.log_probs[:, index], log_probs, advantages[:, index], mask,
                                        cfg.clip_ratio, cfg.clip_ratio, None, "token-mean")
    out = {"actor/pg_loss": float(loss.detach()), **{f"actor/{k}": float(v) for k, v in metrics.items()}}
    if kl_terms:
        kl = torch.stack(kl_terms, dim=1).mean()
        loss = loss + cfg.kl_coef * kl
        out["actor/kl_loss"] = float(kl.detach())
    return loss, out
