"""What a training stage's driver owns, whichever stage it is (RL, CoT-SFT or Flow-GRPO): the data with its resumable
loader, the checkpoints, the tracker, the Ray cluster and one worker group over ``trainer.nnodes x n_gpus_per_node``
ranks.

The stages differ in their worker class, in their rows (video QA rows, with targets for SFT; prompt rows for
generation) and in their loop; :class:`RunBase` is shared so that all read the same config keys the same way and
checkpoint alike, and :class:`TrainingRun` adds the text stages' rows.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from longrl.config.schema import RootConfig
from longrl.controller import Worker
from longrl.controller.resource_pool import ResourcePool, start_local_ray, stop_ray
from longrl.controller.worker_group import RayWorkerGroup
from longrl.data.dataset import SkippedRow, VideoQADataset, collate_left_padded, prompts_to_batch
from longrl.data.targets import TargetTemplate
from longrl.embeds.cache import EmbeddingCache
from longrl.models.registry import adapter_for_model_dir
from longrl.models.run_processor import load_run_processor
from longrl.protocol import Batch
from longrl.rewards import RewardFunctionError
from longrl.trainer.checkpoint import CheckpointManager, default_checkpoint_root, find_resume, resume_run, save_run
from longrl.trainer.dataloader import PromptLoader
from longrl.trainer.loggers import Tracker

logger = logging.getLogger(__name__)


class RunBase(ABC):
    """What a stage's driver owns whatever its rows and its worker: the resumable loader over ``train``, the step
    count, checkpoints, tracker, Ray cluster and worker group, and the training loop (:meth:`fit`). ``cfg`` has the
    stages' shared ``data.*`` loader keys, ``trainer.*`` and ``worker.reward.on_error``; subclasses give
    :meth:`collate` (loader samples -> the workers' :class:`Batch`), :meth:`step` and :meth:`validate`."""

    def __init__(self, cfg: Any, worker_cls: type[Worker], train: Dataset, val: Dataset | None):
        self.cfg, self.val = cfg, val
        round_size = self.prompts_per_round(cfg)
        self.loader = PromptLoader(train, round_size, seed=cfg.data.seed, shuffle=cfg.data.shuffle,
                                   total_epochs=cfg.trainer.total_epochs, collate_fn=self.collate)
        # As EasyR1 counts: the epochs' prompts over the prompts a step trains on.
        self.total_steps = self.loader.total_steps * round_size // cfg.data.rollout_batch_size
        if cfg.trainer.max_steps:  # a cap, as in EasyR1: the data of trainer.total_epochs is all there is
            if cfg.trainer.max_steps > self.total_steps:
                logger.warning("trainer.max_steps=%d exceeds the %d steps of trainer.total_epochs=%d; stopping at %d",
                               cfg.trainer.max_steps, self.total_steps, cfg.trainer.total_epochs, self.total_steps)
            self.total_steps = min(cfg.trainer.max_steps, self.total_steps)
        self.checkpoints = CheckpointManager(cfg.trainer.save_checkpoint_path or default_checkpoint_root(cfg.trainer),
                                             cfg.trainer.save_limit)
        self.resume_from = find_resume(self.checkpoints, cfg)  # another run's checkpoint is refused before any worker
        self.log_dir = Path("outputs") / "logs" / cfg.trainer.project_name / cfg.trainer.experiment_name
        self.tracker = Tracker(cfg.trainer.logger, cfg.trainer.project_name, cfg.trainer.experiment_name,
                               config=cfg, log_dir=self.log_dir, total_steps=self.total_steps)
        # Else a cluster the launcher (or a test) started and will stop.
        self._started_ray = start_local_ray(max(2, cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node))
        self.pool = ResourcePool(cfg.trainer.nnodes, cfg.trainer.n_gpus_per_node)
        print(f"resource pool: {self.pool.describe()}", flush=True)
        self.workers = RayWorkerGroup(self.pool, worker_cls, cfg, self.total_steps)
        self.global_step = 0

    def prompts_per_round(self, cfg: Any) -> int:
        """Prompts per loader batch (one round of generation); a step draws as many rounds as it needs."""
        return cfg.data.rollout_batch_size

    @abstractmethod
    def collate(self, samples: list[Any]) -> Batch:
        """One loader batch of dataset samples as the workers' :class:`Batch`."""

    @abstractmethod
    def step(self) -> dict[str, Any]:
        """One training step; its metrics."""

    @abstractmethod
    def validate(self) -> dict[str, float]:
        """Metrics on the validation split."""

    def resume(self) -> None:
        """Restore the run from its checkpoint, if any (a stage with more loop state extends this)."""
        self.resume_state()

    def save_step(self) -> Path:
        """Checkpoint the current step (a stage with more loop state saves it here)."""
        return self.save()

    def saves_step(self, last: bool) -> bool:
        """Whether :meth:`fit` checkpoints the step just taken (``last``: the run's final step): every
        ``trainer.save_freq`` steps and the last, none when ``trainer.save_freq`` is not positive."""
        save_freq = self.cfg.trainer.save_freq
        return save_freq > 0 and (self.global_step % save_freq == 0 or last)

    def fit(self) -> dict[str, dict[str, float]]:
        """Train to ``total_steps``; returns the first and last validation metrics (empty without a val split)."""
        trainer = self.cfg.trainer
        self.resume()
        summary: dict[str, dict[str, float]] = {}
        if self.val is not None and trainer.val_before_train and self.global_step == 0:
            summary["before"] = self.validate()
            self.tracker.log(summary["before"], self.global_step)
            if trainer.val_only:
                return summary
        while self.global_step < self.total_steps:
            self.global_step += 1
            try:
                metrics = self.step()
            except RewardFunctionError:
                if self.cfg.worker.reward.on_error != "skip_step":
                    raise
                logger.exception("reward function failed at step %d; skipping the step", self.global_step)
                metrics = {"reward/failed_step": 1.0}
            last = self.global_step == self.total_steps
            if self.val is not None and ((trainer.val_freq > 0 and self.global_step % trainer.val_freq == 0) or last):
                summary["after"] = self.validate()
                metrics.update(summary["after"])
            self.tracker.log(metrics, self.global_step)
            if self.saves_step(last):
                self.save_step()
        return summary

    def val_batches(self) -> list[Batch]:
        """The validation split in batches of ``data.val_batch_size`` (all of it at once when not positive)."""
        size = len(self.val) if self.cfg.data.val_batch_size <= 0 else self.cfg.data.val_batch_size
        return [self.collate([self.val[i] for i in range(start, min(start + size, len(self.val)))])
                for start in range(0, len(self.val), size)]

    def resume_state(self) -> dict[str, Any] | None:
        """Restore workers, loader and RNGs from the checkpoint to resume from; the saved loop state, or None."""
        state = resume_run(self.resume_from, self.workers, self.loader)
        if state is not None:
            self.global_step = state["global_step"]
        return state

    def save(self, state: dict[str, Any] | None = None) -> Path:
        return save_run(self.checkpoints, self.global_step, self.workers, self.loader, self.cfg, state or {})

    def shutdown(self) -> None:
        self.workers.shutdown()
        self.tracker.close()
        if self._started_ray:
            stop_ray()


class TrainingRun(RunBase):
    """The text stages' run: video/image QA rows through the model family's adapter and processor."""

    def __init__(self, cfg: RootConfig, worker_cls: type[Worker], targets: TargetTemplate | None = None):
        model_path = cfg.worker.actor.model.model_path
        adapter = adapter_for_model_dir(model_path)
        self.processor = load_run_processor(adapter, cfg)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        cache = EmbeddingCache.from_config(cfg, adapter)

        def dataset(files: str) -> VideoQADataset:
            return VideoQADataset(files, cfg.data, cfg.worker.rollout, adapter, self.processor, cache, targets)

        train = dataset(cfg.data.train_files)
        val = dataset(cfg.data.val_files) if cfg.data.val_files else None
        # data/skipped_rows: the rows dropped while the datasets were built, then those dropped while loading
        self.skipped_rows = len(train.skipped) + (len(val.skipped) if val is not None else 0)
        super().__init__(cfg, worker_cls, train, val)

    def collate(self, samples: list[dict[str, Any] | SkippedRow]) -> Batch:
        """A loader batch as the workers' :class:`Batch`; rows dropped while loading are counted."""
        collated = collate_left_padded(samples, self.tokenizer.pad_token_id)
        self.skipped_rows += len(collated["skipped"])
        return self.to_batch(collated)

    def to_batch(self, collated: dict[str, Any]) -> Batch:
        return prompts_to_batch(collated)
