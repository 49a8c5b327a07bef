"""The RL loop on the single controller: one method per DESIGN.md step, timed per phase.

``step`` reads top to bottom like the map: prompts -> rollout n -> reward -> (DAPO) filter and refill -> old and
ref log-probs -> advantages -> actor update -> weight sync; the shared loop (``RunBase.fit``) then logs, validates
and checkpoints. Every step's randomness
comes from the config seeds, the step number and the checkpointed data-loader and RNG states, so a run resumed from
a checkpoint continues exactly as if it had not stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longrl.algos import get_kl_controller, online_filter_mask
from longrl.config.schema import RootConfig
from longrl.protocol import ATTENTION_MASK, ENTROPY, RESPONSE_MASK, SCORE_PART_PREFIX, SCORES, TASK, UID, Batch
from longrl.trainer.advantage import compute_advantages
from longrl.trainer.loggers import Generation
from longrl.trainer.metrics import (
    append_metrics,
    compute_data_metrics,
    compute_throughput_metrics,
    compute_timing_metrics,
    per_task_mean,
    reduce_metrics,
)
from longrl.trainer.rewarding import RewardScorer, build_reward
from longrl.trainer.run import TrainingRun
from longrl.trainer.sampling import collect_rounds
from longrl.trainer.timer import timer
from longrl.workers.hybrid import HybridWorker, needs_reference
from longrl.workers.rollout.output import align_prompt_width

logger = logging.getLogger(__name__)


class RLTrainer(TrainingRun):
    """One RL run: the hybrid worker group, the data, the reward function, the tracker and the checkpoints."""

    def __init__(self, cfg: RootConfig):
        super().__init__(cfg, HybridWorker)
        self.rewards = RewardScorer(build_reward(cfg), cfg, self.tokenizer)
        algo = cfg.algorithm
        self.kl_ctrl = (get_kl_controller(algo.kl_type, algo.kl_coef, algo.kl_target, algo.kl_horizon)
                        if needs_reference(cfg) and not algo.use_kl_loss else None)

    def prompts_per_round(self, cfg: RootConfig) -> int:
        return cfg.data.mini_rollout_batch_size or cfg.data.rollout_batch_size

    # ----- checkpoints -----------------------------------------------------------------------------------------
    def resume(self) -> None:
        state = self.resume_state()
        if state is not None and self.kl_ctrl is not None:
            self.kl_ctrl.value = state["kl_coef"]

    def save_step(self) -> Path:
        return self.save({"kl_coef": None if self.kl_ctrl is None else self.kl_ctrl.value})

    # ----- the phases of one step ------------------------------------------------------------------------------
    def _rollout_and_score(self, timings: dict[str, float], metrics: dict[str, Any]) -> tuple[Batch, Future | None]:
        """Generate ``n`` responses per prompt, in rounds of ``data.mini_rollout_batch_size`` prompts when set; with
        online filtering, score each round and keep drawing until enough groups have informative rewards (DAPO's
        dynamic sampling).

        Without online filtering nothing waits for the rewards: they are computed in the background and the pending
        result is returned with the unscored batch (joined by :meth:`step` after the log-prob passes).
        """
        cfg, algo = self.cfg, self.cfg.algorithm

        def generate_round(index: int) -> Batch:
            prompts = self._refill_prompts()
            with timer("gen", timings):
                return self.workers.generate(prompts, step=self.global_step * 1000 + index)

        keep = self._filter_round(timings, metrics) if algo.online_filtering else None
        kept, rounds = collect_rounds(generate_round, keep, cfg.data.rollout_batch_size, cfg.worker.rollout.n,
                                      algo.max_try_make_batch, self.loader.steps_per_epoch, self._nothing_kept)
        batch = Batch.concat(align_prompt_width(kept, self.tokenizer.pad_token_id)) if len(kept) > 1 else kept[0]
        batch = batch[: cfg.data.rollout_batch_size * cfg.worker.rollout.n]
        append_metrics(metrics, {"filter/tries": rounds})
        return batch, (None if algo.online_filtering else self.rewards.submit(batch))

    def _filter_round(self, timings: dict[str, float], metrics: dict[str, Any]) -> Callable[[Batch], Batch]:
        """Online filtering of one round: its rewards are computed and attached, and the groups whose mean
        ``algorithm.filter_key`` lies inside the filter bounds are kept."""
        algo = self.cfg.algorithm

        def keep(rollout: Batch) -> Batch:
            with timer("reward", timings):
                scored = self.rewards.score(rollout)
            append_metrics(metrics, scored.metrics)
            mask = online_filter_mask(scored.filter_values(),
                                      np.asarray(rollout.non_tensors[UID]), algo.filter_key, algo.filter_low,
                                      algo.filter_high)
            append_metrics(metrics, {"filter/kept_ratio": float(mask.mean())})
            return scored.attach(rollout)[mask]

        return keep

    def _refill_prompts(self) -> Batch:
        """The next prompts for a round of generation. Online filtering draws more batches than it makes steps, so it
        can use up the data of ``trainer.total_epochs`` before the last step: it then goes on into the next epoch (as
        EasyR1 does), and says so, instead of ending the run inside a step."""
        try:
            return self.loader.next_batch()
        except StopIteration:
            epoch = self.loader.add_epoch()
            logger.warning("step %d/%d: online filtering has used up the %d epoch(s) of trainer.total_epochs; "
                           "refilling from epoch %d (the same rows in a new order)", self.global_step,
                           self.total_steps, epoch, epoch + 1)
            return self.loader.next_batch()

    def _nothing_kept(self, tries: int) -> str:
        """Why dynamic sampling gave up, and what to change."""
        algo, rollout = self.cfg.algorithm, self.cfg.worker.rollout
        return (f"step {self.global_step}: online filtering kept no group of prompts in {tries} batches "
                f"(algorithm.max_try_make_batch={algo.max_try_make_batch}, {self.loader.steps_per_epoch} batches per "
                f"epoch): every group's {algo.filter_key!r} was outside (algorithm.filter_low={algo.filter_low}, "
                f"algorithm.filter_high={algo.filter_high}), i.e. all {rollout.n} responses scored alike. Check that "
                f"the reward's {algo.filter_key!r} varies within a group (worker.rollout.n, temperature), widen the "
                "filter bounds, raise algorithm.max_try_make_batch, or set algorithm.online_filtering=false")

    def step(self) -> dict[str, Any]:
        """One training step; returns its metrics."""
        timings: dict[str, float] = {}
        metrics: dict[str, Any] = {}
        with timer("step", timings):
            batch, pending_scores = self._rollout_and_score(timings, metrics)
            with timer("old_log_prob", timings):
                batch = batch.union(self.workers.compute_log_prob(batch))
            if needs_reference(self.cfg):
                with timer("ref_log_prob", timings):
                    batch = batch.union(self.workers.compute_ref_log_prob(batch))
            if pending_scores is not None:
                with timer("reward", timings):  # only the wait left after the log-prob passes
                    scored = pending_scores.result()
                append_metrics(metrics, scored.metrics)
                batch = scored.attach(batch)
            with timer("adv", timings):
                batch, kl_metrics = compute_advantages(batch, batch.tensors[SCORES], self.cfg, self.kl_ctrl)
            with timer("update_actor", timings):
                actor_metrics: dict[str, list[float]] = {}
                for rank_metrics in self.workers.update_actor(batch):
                    append_metrics(actor_metrics, rank_metrics)
            with timer("sync_weights", timings):
                self.workers.sync_rollout_weights()
        parts = {key[len(SCORE_PART_PREFIX):]: list(values) for key, values in batch.non_tensors.items()
                 if key.startswith(SCORE_PART_PREFIX)}
        entropy = batch.tensors[ENTROPY][batch.tensors[RESPONSE_MASK].bool()]
        return {
            **compute_data_metrics(batch, batch.tensors[SCORES], self.cfg.data.max_response_length, parts),
            **compute_timing_metrics(timings),
            **compute_throughput_metrics(int(batch.tensors[ATTENTION_MASK].sum()), timings,
                                         self.cfg.trainer.nnodes * self.cfg.trainer.n_gpus_per_node),
            **kl_metrics, **reduce_metrics(actor_metrics), **reduce_metrics(metrics),
            "actor/entropy": float(entropy.mean()) if entropy.numel() else 0.0,
            "data/skipped_rows": float(self.skipped_rows),
        }

    def validate(self) -> dict[str, float]:
        """Greedy (``val_override_config``) answers on the validation split: reward, accuracy overall and per task."""
        scores, accuracy, tasks, generations = [], [], [], []
        reward_metrics: dict[str, float] = {}
        for prompts in self.val_batches():
            rollout = self.workers.generate(prompts, step=self.global_step, validate=True)
            scored = self.rewards.score(rollout)
            inputs, batch_scores = scored.inputs, scored.scores
            for key, value in scored.metrics.items():  # summed over the split: seconds, judge requests, ...
                reward_metrics[f"val/{key}"] = reward_metrics.get(f"val/{key}", 0.0) + value
            scores += batch_scores.tolist()
            accuracy += scored.accuracy().tolist()
            tasks += list(rollout.non_tensors[TASK])
            generations += [Generation(item["problem"], item["response"], item["ground_truth"], float(score))
                            for item, score in zip(inputs, batch_scores.tolist())]
        self.tracker.log_generations(generations[: self.cfg.trainer.val_generations_to_log], self.global_step)
        return {"val/reward": float(np.mean(scores)), "val/accuracy": float(np.mean(accuracy)),
                **per_task_mean(tasks, torch.tensor(accuracy), prefix="val/accuracy"), **reward_metrics}

    def shutdown(self) -> None:
        self.rewards.close()
        super().shutdown()
