"""What a training stage's driver owns, whichever stage it is (RL or CoT-SFT): the data with its resumable loader,
the checkpoints, the tracker, the Ray cluster and one worker group over ``trainer.nnodes x n_gpus_per_node`` ranks.

The stages differ in their worker class, in what a sample carries (the SFT stage adds the target) and in their
loop; everything here is shared so that both read the same config keys the same way and checkpoint alike.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from longrl.config.schema import RootConfig
from longrl.controller import Worker
from longrl.controller.resource_pool import ResourcePool, start_local_ray, stop_ray
from longrl.controller.worker_group import RayWorkerGroup
from longrl.data.dataset import SkippedRow, VideoQADataset, collate_left_padded, prompts_to_batch
from longrl.embeds.cache import EmbeddingCache
from longrl.models.registry import adapter_for_model_dir
from longrl.protocol import Batch
from longrl.sft.targets import TargetTemplate
from longrl.trainer.checkpoint import CheckpointManager, default_checkpoint_root, resume_run, save_run
from longrl.trainer.dataloader import PromptLoader
from longrl.trainer.loggers import Tracker

logger = logging.getLogger(__name__)


class TrainingRun:
    """Builds the data, loader, checkpoints, tracker and worker group of one run; subclasses add the loop."""

    def __init__(self, cfg: RootConfig, worker_cls: type[Worker], targets: TargetTemplate | None = None):
        self.cfg = cfg
        model_path = cfg.worker.actor.model.model_path
        adapter = adapter_for_model_dir(model_path)
        self.processor = adapter.load_processor(model_path)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        cache = EmbeddingCache.from_config(cfg, adapter)

        def dataset(files: str) -> VideoQADataset:
            return VideoQADataset(files, cfg.data, cfg.worker.rollout, adapter, self.processor, cache, targets)

        train = dataset(cfg.data.train_files)
        self.val = dataset(cfg.data.val_files) if cfg.data.val_files else None
        self.skipped_rows = 0
        self.loader = PromptLoader(train, cfg.data.rollout_batch_size, seed=cfg.data.seed, shuffle=cfg.data.shuffle,
                                   total_epochs=cfg.trainer.total_epochs, collate_fn=self.collate)
        self.total_steps = self.loader.total_steps
        if cfg.trainer.max_steps:  # a cap, as in EasyR1: the data of trainer.total_epochs is all there is
            if cfg.trainer.max_steps > self.total_steps:
                logger.warning("trainer.max_steps=%d exceeds the %d steps of trainer.total_epochs=%d; stopping at %d",
                               cfg.trainer.max_steps, self.total_steps, cfg.trainer.total_epochs, self.total_steps)
            self.total_steps = min(cfg.trainer.max_steps, self.total_steps)
        self.checkpoints = CheckpointManager(cfg.trainer.save_checkpoint_path or default_checkpoint_root(cfg.trainer),
                                             cfg.trainer.save_limit)
        self.log_dir = Path("outputs") / "logs" / cfg.trainer.project_name / cfg.trainer.experiment_name
        self.tracker = Tracker(cfg.trainer.logger, cfg.trainer.project_name, cfg.trainer.experiment_name,
                               config=cfg, log_dir=self.log_dir)
        # Else a cluster the launcher (or a test) started and will stop.
        self._started_ray = start_local_ray(max(2, cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node))
        self.pool = ResourcePool(cfg.trainer.nnodes, cfg.trainer.n_gpus_per_node)
        print(f"resource pool: {self.pool.describe()}", flush=True)
        self.workers = RayWorkerGroup(self.pool, worker_cls, cfg, self.total_steps)
        self.global_step = 0

    def collate(self, samples: list[dict[str, Any] | SkippedRow]) -> Batch:
        """A loader batch as the workers' :class:`Batch`; rows skipped under ``data.on_bad_row=skip`` are counted."""
        collated = collate_left_padded(samples, self.tokenizer.pad_token_id)
        self.skipped_rows += len(collated["skipped"])
        return self.to_batch(collated)

    def to_batch(self, collated: dict[str, Any]) -> Batch:
        return prompts_to_batch(collated)

    def val_batches(self) -> list[Batch]:
        """The validation split in batches of ``data.val_batch_size`` (all of it at once when not positive)."""
        size = len(self.val) if self.cfg.data.val_batch_size <= 0 else self.cfg.data.val_batch_size
        return [self.collate([self.val[i] for i in range(start, min(start + size, len(self.val)))])
                for start in range(0, len(self.val), size)]

    def resume_state(self) -> dict[str, Any] | None:
        """Restore workers, loader and RNGs from the checkpoint to resume from; the saved loop state, or None."""
        state = resume_run(self.checkpoints, self.cfg.trainer.load_checkpoint_path, self.workers, self.loader)
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
