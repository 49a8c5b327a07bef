"""One rank's Flow-GRPO generator: sampling with log-probs, and the clipped policy-gradient update.

It holds the trained transformer (already FSDP-sharded by the worker that built it, or a plain module in a test),
what the KL compares against (the base with its LoRA adapters disabled, or a frozen copy), the frozen text encoder and
the media decoder. Nothing here knows about processes: under FSDP the gradients are reduced inside ``backward`` and
the gradient norm is the global one, so the same code runs on one CPU and on many GPUs.

Rollout rows arrive with a seed each; a sample's noise comes from its own generator, so it is the same whichever rank
or micro-batch draws it. The update walks mini-batches (one optimizer step each: ``global_batch_size`` prompts x
``n`` samples over the data-parallel ranks), micro-batches and, inside each, the sample's trained denoising steps one
at a time, calling ``backward`` after each: only one transformer pass's activations are alive at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from longrl.flow.config import FlowRootConfig
from longrl.flow.family import FlowFamily, TextConditioning
from longrl.flow.grpo import Guidance, Velocity, guided_velocity, sample_trajectories, step_loss
from longrl.flow.media import MediaDecoder
from longrl.flow.sde import flow_sigmas
from longrl.flow.text import TextEncoder
from longrl.models.lora import adapters_disabled
from longrl.protocol import ADVANTAGES, Batch

__all__ = ["FlowPolicy", "Rollout", "media_to_uint8"]

Rollout = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # states (b, T+1, ...), log_probs (b, T), media uint8


def media_to_uint8(media: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` media as 8-bit values: what images are, and a quarter of the bytes to send to the trainer."""
    return (media * 255).round().to(torch.uint8)


def _index(text: TextConditioning, rows: torch.Tensor | slice) -> TextConditioning:
    return TextConditioning(text.tokens[rows], None if text.pooled is None else text.pooled[rows])


class FlowPolicy:
    """``model`` (trained) with its ``reference`` for the KL: a module, ``"lora"`` (the base of ``model``'s adapters)
    or None (no KL term)."""

    def __init__(self, cfg: FlowRootConfig, flow: FlowFamily, model: torch.nn.Module,
                 reference: torch.nn.Module | str | None, text_encoder: TextEncoder, decoder: MediaDecoder,
                 optimizer: torch.optim.Optimizer | None, device: torch.device):
        self.cfg, self.flow, self.model, self.device = cfg, flow, model, device
        self.text_encoder, self.decoder, self.optimizer = text_encoder, decoder, optimizer
        rollout = cfg.worker.rollout
        self.sigmas = flow_sigmas(rollout.num_steps, rollout.shift)
        negative = text_encoder.encode([""]) if rollout.guidance_scale > 1 else None
        self.guidance = Guidance(negative, rollout.guidance_scale)
        self.velocity: Velocity = self._bind(model)
        self.reference: Velocity | None = None
        if reference == "lora":
            def base(latents: torch.Tensor, sigma: torch.Tensor, text: TextConditioning) -> torch.Tensor:
                with adapters_disabled(model):
                    return self.velocity(latents, sigma, text)

            self.reference = base
        elif reference is not None:
            self.reference = self._bind(reference)

    def _bind(self, model: torch.nn.Module) -> Velocity:
        def velocity(latents: torch.Tensor, sigma: torch.Tensor, text: TextConditioning) -> torch.Tensor:
            return guided_velocity(self.flow, model, latents, sigma, text, self.guidance)

        return velocity

    def latent_shape(self) -> tuple[int, ...]:
        """One sample's latent shape at the configured media size."""
        rollout = self.cfg.worker.rollout
        frames, height, width = self.decoder.latent_size(rollout.num_frames, rollout.height, rollout.width)
        return self.flow.latent_shape(self.model, 1, frames, height, width)[1:]

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], seeds: Sequence[int], eta: float) -> Rollout:
        """Sample ``prompts[i]`` from ``seeds[i]`` (``eta = 0``: the deterministic ODE, zero log-probs), in chunks of
        ``micro_batch_size_per_device_for_experience``; everything returned is on the CPU."""
        self.model.eval()
        chunk = self.cfg.worker.actor.micro_batch_size_per_device_for_experience
        states, log_probs, media = [], [], []
        for start in range(0, len(prompts), chunk):
            text = self.text_encoder.encode(list(prompts[start:start + chunk]))
            generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds[start:start + chunk]]
            out = sample_trajectories(self.velocity, text, self.sigmas, eta, generators, self.latent_shape(),
                                      self.device)
            states.append(out.states.cpu())
            log_probs.append(out.log_probs.cpu())
            media.append(media_to_uint8(self.decoder(out.states[:, -1])).cpu())
        return torch.cat(states), torch.cat(log_probs), torch.cat(media)

    def update(self, batch: Batch, data_parallel_size: int) -> dict[str, float]:
        """``ppo_epochs`` passes of the clipped policy gradient over this rank's rows. ``batch`` holds ``states``,
        ``log_probs`` (the rollout's, the old policy), ``advantages`` (b,), ``train_steps`` (b, K: the denoising steps
        each sample trains) and the ``prompt`` texts. Returns metrics averaged over the (micro-batch, step) terms."""
        assert self.optimizer is not None, "update called on a policy without an optimizer"
        cfg, actor = self.cfg, self.cfg.worker.actor
        self.model.train()
        text = self.text_encoder.encode(list(batch.non_tensors["prompt"]))
        mini_rows = max(1, actor.global_batch_size * cfg.worker.rollout.n // data_parallel_size)
        metrics: dict[str, list[float]] = {}
        for _ in range(actor.ppo_epochs):
            for mini_start in range(0, len(batch), mini_rows):
                mini = range(mini_start, min(mini_start + mini_rows, len(batch)))
                for micro_start in range(mini.start, mini.stop, actor.micro_batch_size_per_device_for_update):
                    rows = slice(micro_start, min(micro_start + actor.micro_batch_size_per_device_for_update,
                                                  mini.stop))
                    self._accumulate(batch[rows], _index(text, rows), len(mini), metrics)
                self._optimizer_step(metrics)
        return {key: sum(values) / len(values) for key, values in metrics.items()}

    def _accumulate(self, micro: Batch, text: TextConditioning, mini_rows: int,
                    metrics: dict[str, list[float]]) -> None:
        """Backward through every trained step of ``micro``'s samples, weighted so a mini-batch's gradient is the
        mean over its samples and their steps."""
        t = {key: micro.tensors[key].to(self.device) for key in ("states", "log_probs", ADVANTAGES, "train_steps")}
        rows = torch.arange(len(micro), device=self.device)
        sigmas = self.sigmas.to(self.device)
        steps = t["train_steps"].shape[1]
        for k in range(steps):
            step = t["train_steps"][:, k]
            loss, step_metrics = step_loss(
                self.velocity, self.reference, text, t["states"][rows, step], t["states"][rows, step + 1],
                sigmas[step], sigmas[step + 1], t["log_probs"][rows, step], t[ADVANTAGES],
                self.cfg.worker.rollout.eta, self.cfg.worker.actor.clip_ratio_low,
                self.cfg.worker.actor.clip_ratio_high, self.cfg.algorithm.kl_coef)
            (loss * len(micro) / (mini_rows * steps)).backward()
            for key, value in step_metrics.items():
                metrics.setdefault(key, []).append(value)

    def _optimizer_step(self, metrics: dict[str, list[float]]) -> None:
        """Clip the global gradient norm and step (skipped when the norm is not finite)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.worker.actor.max_grad_norm)
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        if math.isfinite(grad_norm):
            self.optimizer.step()
        metrics.setdefault("actor/grad_norm", []).append(grad_norm)
        self.optimizer.zero_grad(set_to_none=True)
