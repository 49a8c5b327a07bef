"""Flow-GRPO: group-relative policy optimisation of a flow-matching generator over its SDE denoising steps.

Rollout: ``n`` SDE trajectories per prompt (:func:`sample_trajectories`), each step's log-prob recorded; each sample
draws from its own generator, so a sample does not depend on which rank or batch it was drawn in. Reward: one score
per sample on the final media. Advantage: GRPO's group normalisation over a prompt's ``n`` samples
(:func:`group_advantages`), shared by all of the sample's steps. Update: the PPO-clip loss of :mod:`longrl.algos` with
denoising steps in place of tokens, one step at a time (:func:`step_loss`; each sample may train its own subset of
steps), plus Flow-GRPO's KL to the frozen reference: between two Gaussian steps of equal std it is
``|mean - mean_ref|^2 / (2 std^2)``, averaged over elements like the log-probs.

Classifier-free guidance (``guidance_scale > 1``) is part of the policy: the guided velocity defines the step's mean
both when sampling and when the update re-scores the step, so the ratio is that of the distribution sampled from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from longrl.algos import compute_policy_loss
from longrl.algos.advantages import compute_grpo_outcome_advantage
from longrl.flow.family import FlowFamily, TextConditioning
from longrl.flow.sde import sde_step

__all__ = ["Guidance", "Trajectories", "group_advantages", "guided_velocity", "sample_trajectories", "step_loss"]

# velocity(latents, sigma, text) -> v: a model (policy or reference) bound to its family and guidance.
Velocity = Callable[[torch.Tensor, torch.Tensor, TextConditioning], torch.Tensor]


@dataclass
class Guidance:
    """Classifier-free guidance: the conditioning of the empty prompt (one row) and the scale (1 = off)."""

    negative: TextConditioning | None = None
    scale: float = 1.0


@dataclass
class Trajectories:
    states: torch.Tensor  # (b, T + 1, ...): x at each noise level, pure noise first
    log_probs: torch.Tensor  # (b, T)


def _rows(text: TextConditioning, count: int) -> TextConditioning:
    """One-row conditioning repeated ``count`` times."""
    pooled = None if text.pooled is None else text.pooled.expand(count, -1)
    return TextConditioning(text.tokens.expand(count, -1, -1), pooled)


def guided_velocity(flow: FlowFamily, model: torch.nn.Module, latents: torch.Tensor, sigma: torch.Tensor,
                    text: TextConditioning, guidance: Guidance) -> torch.Tensor:
    """The velocity the policy follows: ``v_uncond + scale * (v_cond - v_uncond)`` in one batched forward, or the
    conditional velocity alone when guidance is off."""
    if guidance.scale == 1.0 or guidance.negative is None:
        return flow.velocity(model, latents, sigma, text)
    b = latents.shape[0]
    negative = _rows(guidance.negative, b)
    both = TextConditioning(torch.cat([text.tokens, negative.tokens]),
                            None if text.pooled is None else torch.cat([text.pooled, negative.pooled]))
    sigmas = sigma.repeat(2) if sigma.dim() else sigma
    cond, uncond = flow.velocity(model, torch.cat([latents, latents]), sigmas, both).chunk(2)
    return uncond + guidance.scale * (cond - uncond)


@torch.no_grad()
def sample_trajectories(velocity: Velocity, text: TextConditioning, sigmas: torch.Tensor, eta: float,
                        generators: Sequence[torch.Generator], latent_shape: Sequence[int],
                        device: torch.device) -> Trajectories:
    """SDE sampling along ``sigmas`` (``eta = 0``: the ODE, no log-probs), sample ``i`` drawing its initial noise and
    every step's noise from ``generators[i]``."""

    def draw() -> torch.Tensor:
        return torch.stack([torch.randn(tuple(latent_shape), generator=g) for g in generators]).to(device)

    states, log_probs = [draw()], []
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        noise = draw() if eta > 0 else None
        step = sde_step(velocity(states[-1], s.to(device), text), states[-1], s, s_next, eta, noise=noise)
        states.append(step.sample)
        log_probs.append(step.log_prob)
    return Trajectories(torch.stack(states, dim=1), torch.stack(log_probs, dim=1))


def group_advantages(scores: torch.Tensor, uids: np.ndarray, norm_by_std: bool = True,
                     clip: float | None = None) -> torch.Tensor:
    """GRPO advantages (b,) of the final-media ``scores`` over the samples sharing a ``uid``; a group whose scores are
    all equal gets zeros. ``clip`` bounds them (Flow-GRPO clips at 5): a group with one outlier otherwise dominates."""
    rewards = scores.float().reshape(-1, 1)
    advantages, _ = compute_grpo_outcome_advantage(rewards, torch.ones_like(rewards), uids,
                                                   norm_adv_by_std_in_grpo=norm_by_std)
    advantages = advantages[:, 0].float()
    return advantages if clip is None else advantages.clamp(-clip, clip)


def step_loss(policy: Velocity, reference: Velocity | None, text: TextConditioning, state: torch.Tensor,
              taken: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, old_log_prob: torch.Tensor,
              advantages: torch.Tensor, eta: float, clip_low: float, clip_high: float,
              kl_coef: float) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one denoising step of each sample (``sigma`` and ``sigma_next`` per sample): PPO-clip on the
    ratio of the step's new to old log-prob, plus ``kl_coef`` x the KL to ``reference`` (None: no KL term)."""
    step = sde_step(policy(state, sigma, text), state, sigma, sigma_next, eta, taken=taken)
    ones = torch.ones_like(step.log_prob).unsqueeze(1)
    loss, metrics = compute_policy_loss(old_log_prob.unsqueeze(1), step.log_prob.unsqueeze(1),
                                        advantages.unsqueeze(1), ones, clip_low, clip_high, None, "token-mean")
    out = {"actor/pg_loss": float(loss.detach()), **{f"actor/{k}": float(v) for k, v in metrics.items()}}
    if reference is not None and kl_coef > 0:
        with torch.no_grad():
            ref = sde_step(reference(state, sigma, text), state, sigma, sigma_next, eta, taken=taken)
        kl = ((step.mean - ref.mean) ** 2 / (2 * step.std**2)).flatten(1).mean(1).mean()
        loss = loss + kl_coef * kl
        out["actor/kl_loss"] = float(kl.detach())
    return loss, out
