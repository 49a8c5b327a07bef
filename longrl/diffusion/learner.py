"""One process's Flow-GRPO: the trained transformer, its frozen reference, the optimizer, and one step.

This is the piece a worker will wrap when the diffusion path joins the Ray controller (not yet): a step draws the
rollout noise and the SDE noise from a generator seeded by (seed, step), so a run resumed from :meth:`save` draws
exactly what the uninterrupted run would have.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from longrl.diffusion.flow_grpo import FlowGRPOConfig, flow_grpo_loss, group_advantages, sample_trajectories
from longrl.diffusion.models import FlowFamily, TextConditioning
from longrl.diffusion.rewards import pixel_space_media

__all__ = ["FlowGRPOLearner"]

MediaReward = Callable[[torch.Tensor], torch.Tensor]  # (b, 3, ...) media in [0, 1] -> (b,) scores


class FlowGRPOLearner:
    def __init__(self, flow: FlowFamily, model: torch.nn.Module, cfg: FlowGRPOConfig, sigmas: torch.Tensor,
                 lr: float, seed: int = 0, updates_per_step: int = 1):
        self.flow, self.model, self.cfg, self.sigmas = flow, model, cfg, sigmas
        self.reference = copy.deepcopy(model).requires_grad_(False) if cfg.kl_coef > 0 else None
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        self.seed, self.updates_per_step, self.step_count = seed, updates_per_step, 0

    def step(self, text: TextConditioning, prompt_ids: np.ndarray, latent_shape: tuple[int, ...],
             reward: MediaReward) -> dict[str, float]:
        """Rollout (one trajectory per row of ``text``), reward, advantages, ``updates_per_step`` updates."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step_count)
        noise = torch.randn(latent_shape, generator=generator)
        rollout = sample_trajectories(self.flow, self.model, text, noise, self.sigmas, self.cfg.eta, generator)
        scores = reward(pixel_space_media(rollout.states[-1]))
        steps = rollout.log_probs.shape[1]
        advantages = group_advantages(scores, prompt_ids, steps)
        trained = sorted(np.random.default_rng([self.seed, self.step_count]).choice(
            steps, max(1, round(self.cfg.timestep_fraction * steps)), replace=False).tolist())
        metrics: dict[str, float] = {}
        for _ in range(self.updates_per_step):
            self.optimizer.zero_grad(set_to_none=True)
            loss, metrics = flow_grpo_loss(self.flow, self.model, text, rollout, advantages, trained, self.cfg,
                                           self.reference)
            loss.backward()
            self.optimizer.step()
        self.step_count += 1
        return {"reward/mean": float(scores.mean()), "reward/std": float(scores.std()), **metrics}

    @torch.no_grad()
    def evaluate(self, text: TextConditioning, noise: torch.Tensor, reward: MediaReward) -> float:
        """Mean reward of deterministic (ODE) samples from fixed ``noise``."""
        rollout = sample_trajectories(self.flow, self.model, text, noise, self.sigmas, eta=0.0)
        return float(reward(pixel_space_media(rollout.states[-1])).mean())

    def save(self, path: str | Path) -> None:
        """Model, optimizer and step count in one file, written to a temporary name and renamed (atomic)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "step": self.step_count}, tmp)
        tmp.replace(path)

    def load(self, path: str | Path) -> None:
        state = torch.load(path, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count = state["step"]
