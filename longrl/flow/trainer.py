"""The Flow-GRPO loop on the single controller: the text stages' machinery (loader, checkpoints, tracker, worker group,
``RunBase.fit``) with a generator's step.

A step: prompts (``data.rollout_batch_size`` rows) -> each repeated ``worker.rollout.n`` times with a seed per sample
-> the workers sample SDE trajectories and decode the media (``generate``) -> the reward function scores the media
here, on the driver -> GRPO advantages over each prompt's samples -> the denoising steps each sample trains (a
``timestep_fraction`` share, drawn per sample) -> the workers' clipped policy-gradient update. Seeds and trained steps
come from ``worker.rollout.seed`` and the step number, the prompts from the checkpointed loader, so a resumed run
repeats the uninterrupted one exactly. Validation samples the ODE (no noise) from seeds fixed per prompt row, so
``val/reward`` compares the same draws before and after training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from longrl.flow.config import FlowRootConfig
from longrl.flow.grpo import group_advantages
from longrl.flow.prompts import PromptDataset, PromptRow
from longrl.flow.rewards import with_long_rl_media_keys
from longrl.flow.worker import FlowWorker
from longrl.protocol import ADVANTAGES, UID, Batch
from longrl.rewards import Reward
from longrl.trainer.loggers import Generation
from longrl.trainer.metrics import append_metrics, compute_timing_metrics, reduce_metrics
from longrl.trainer.rewarding import load_configured_reward
from longrl.trainer.run import RunBase
from longrl.trainer.timer import timer

__all__ = ["FlowTrainer", "seeds"]

# The first entry of a seed key says what the seeds are for, so the streams never meet.
_TRAIN, _VALIDATION, _TIMESTEPS = 1, 0, 2


def seeds(count: int, *key: int) -> list[int]:
    """``count`` independent 63-bit seeds from the integer ``key`` (numpy's SeedSequence: nearby keys do not give
    nearby streams)."""
    return [int(s) >> 1 for s in np.random.SeedSequence(list(key)).generate_state(count, dtype=np.uint64)]


def _stats(prefix: str, values: torch.Tensor) -> dict[str, float]:
    return {f"{prefix}/mean": float(values.mean()), f"{prefix}/std": float(values.std(unbiased=False)),
            f"{prefix}/max": float(values.max()), f"{prefix}/min": float(values.min())}


class FlowTrainer(RunBase):
    """One Flow-GRPO run: prompt rows, the generator's worker group, the reward on media, the tracker, checkpoints."""

    def __init__(self, cfg: FlowRootConfig):
        data = cfg.data
        train = PromptDataset(data.train_files, data.prompt_key)
        val = PromptDataset(data.val_files, data.prompt_key) if data.val_files else None
        reward = cfg.worker.reward
        self.reward: Reward = load_configured_reward(reward)
        super().__init__(cfg, FlowWorker, train, val)
        rollout = cfg.worker.rollout
        self.trained_steps = max(1, round(cfg.worker.actor.timestep_fraction * rollout.num_steps))
        self.val_seeds = seeds(len(val), rollout.seed, _VALIDATION) if val is not None else []

    def collate(self, samples: list[PromptRow]) -> Batch:
        return Batch.from_dict(non_tensors={"prompt": [row["prompt"] for row in samples],
                                            "metadata": [row["metadata"] for row in samples],
                                            UID: np.array([row["index"] for row in samples])})

    def score(self, batch: Batch) -> tuple[torch.Tensor, dict[str, list[float]]]:
        """The reward of each row's ``media``: overall scores (b,) and the other parts' values by name. A failing reward
        function raises ``RewardFunctionError`` naming the sample (its prompt row and the media's shape)."""
        media, fields = batch.tensors["media"], batch.non_tensors
        inputs = [with_long_rl_media_keys({"media": media[i].float() / 255, "prompt": str(fields["prompt"][i]),
                                           "metadata": fields["metadata"][i]}) for i in range(len(batch))]
        scores = self.reward(inputs)
        parts: dict[str, list[float]] = {}  # a part is averaged over the samples that have it (a row without
        for score in scores:  # position relations has no position part)
            for key, value in score.items():
                if key != "overall":
                    parts.setdefault(key, []).append(value)
        return torch.tensor([s["overall"] for s in scores]), parts

    def train_steps(self, count: int) -> torch.Tensor:
        """(count, K): each sample's trained denoising steps, a sorted random K-subset of its steps."""
        generator = torch.Generator().manual_seed(seeds(1, self.cfg.worker.rollout.seed, _TIMESTEPS,
                                                        self.global_step)[0])
        num_steps = self.cfg.worker.rollout.num_steps
        return torch.stack([torch.randperm(num_steps, generator=generator)[: self.trained_steps].sort().values
                            for _ in range(count)])

    def step(self) -> dict[str, Any]:
        cfg, timings = self.cfg, {}
        with timer("step", timings):
            rows = self.loader.next_batch().repeat(cfg.worker.rollout.n)
            rows = rows.with_non_tensors(seed=seeds(len(rows), cfg.worker.rollout.seed, _TRAIN, self.global_step))
            with timer("gen", timings):
                batch = rows.union(self.workers.generate(rows))
            with timer("reward", timings):
                scores, parts = self.score(batch)
            with timer("adv", timings):
                advantages = group_advantages(scores, batch.non_tensors[UID],
                                              cfg.algorithm.norm_adv_by_std_in_grpo, cfg.algorithm.adv_clip_max)
            update = Batch.from_dict({"states": batch.tensors["states"], "log_probs": batch.tensors["log_probs"],
                                      ADVANTAGES: advantages, "train_steps": self.train_steps(len(batch))},
                                     {"prompt": batch.non_tensors["prompt"]})
            with timer("update_actor", timings):
                actor: dict[str, list[float]] = {}
                for rank_metrics in self.workers.update_actor(update):
                    append_metrics(actor, rank_metrics)
        return {**_stats("critic/score", scores), **{f"reward/{k}": float(np.mean(v)) for k, v in parts.items()},
                "critic/advantages/max": float(advantages.max()), "critic/advantages/min": float(advantages.min()),
                **reduce_metrics(actor), **compute_timing_metrics(timings),
                "perf/time_per_step": timings["step"]}

    def validate(self) -> dict[str, float]:
        """Mean reward (and parts) of ODE samples of the validation rows, each from its fixed seed; the first
        ``trainer.val_generations_to_log`` media are written as PNG under the log directory and logged."""
        scores: list[float] = []
        parts: dict[str, list[float]] = {}
        generations: list[Generation] = []
        for prompts in self.val_batches():
            rows = prompts.with_non_tensors(seed=[self.val_seeds[i] for i in prompts.non_tensors[UID]])
            batch = rows.union(self.workers.generate(rows, validate=True))
            batch_scores, batch_parts = self.score(batch)
            scores += batch_scores.tolist()
            append_metrics(parts, batch_parts)
            for i in range(min(len(batch), self.cfg.trainer.val_generations_to_log - len(generations))):
                path = self._write_media(batch.tensors["media"][i], int(batch.non_tensors[UID][i]))
                generations.append(Generation(str(batch.non_tensors["prompt"][i]), str(path), "",
                                              float(batch_scores[i])))
        self.tracker.log_generations(generations, self.global_step)
        return {"val/reward": float(np.mean(scores)),
                **{f"val/reward/{k}": float(np.mean(v)) for k, v in parts.items()}}

    def _write_media(self, media: torch.Tensor, row: int) -> Path:
        """One validation sample as a PNG (a video's frames side by side)."""
        frames = media if media.dim() == 3 else torch.cat(list(media.transpose(0, 1)), dim=-1)
        path = self.log_dir / "media" / f"step_{self.global_step}" / f"row_{row}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frames.permute(1, 2, 0).numpy()).save(path)
        return path

    def shutdown(self) -> None:
        close = getattr(self.reward, "close", None)
        if close is not None:
            close()
        super().shutdown()
