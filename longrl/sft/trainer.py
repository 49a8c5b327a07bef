"""The CoT-SFT loop on the single controller: rows with reasoning traces -> prompt + target batches -> the SFT
worker group's update, with validation loss, logging and atomic, resumable checkpoints as in the RL stage.

A resumed run continues exactly where it stopped: the loader's position, the RNG states, the model, optimizer and
learning-rate schedule are all in the checkpoint.
"""

from __future__ import annotations

from typing import Any

from longrl.config.errors import ConfigError
from longrl.config.schema import RootConfig
from longrl.protocol import ATTENTION_MASK, RESPONSE_MASK, Batch
from longrl.sft.batch import sft_batch
from longrl.data.targets import TargetTemplate
from longrl.trainer.metrics import (
    append_metrics,
    compute_throughput_metrics,
    compute_timing_metrics,
    reduce_metrics,
)
from longrl.trainer.run import TrainingRun
from longrl.trainer.timer import timer
from longrl.workers.sft import SFTWorker


class SFTTrainer(TrainingRun):
    """One SFT run over ``data.train_files`` (and the validation loss on ``data.val_files``)."""

    def __init__(self, cfg: RootConfig):
        if cfg.data.mini_rollout_batch_size is not None:
            raise ConfigError(f"data.mini_rollout_batch_size={cfg.data.mini_rollout_batch_size} sizes rounds of "
                              "generation, which the SFT stage does not run: unset it (data.rollout_batch_size "
                              "rows make a step)")
        super().__init__(cfg, SFTWorker, targets=TargetTemplate.from_file(cfg.sft.target_template))

    def to_batch(self, collated: dict[str, Any]) -> Batch:
        return sft_batch(collated, self.tokenizer.pad_token_id, self.tokenizer.eos_token_id)

    def step(self) -> dict[str, float]:
        timings: dict[str, float] = {}
        with timer("step", timings):
            batch = self.loader.next_batch()
            with timer("update_actor", timings):
                per_rank = self.workers.train_step(batch)
        collected: dict[str, list[float]] = {}
        for rank_metrics in per_rank:
            append_metrics(collected, rank_metrics)
        tokens = int(batch.tensors[ATTENTION_MASK].sum())
        world = self.cfg.trainer.nnodes * self.cfg.trainer.n_gpus_per_node
        return {**reduce_metrics(collected), **compute_timing_metrics(timings),
                **compute_throughput_metrics(tokens, timings, world),
                "sft/target_tokens": float(batch.tensors[RESPONSE_MASK].sum()),
                "data/skipped_rows": float(self.skipped_rows)}

    def validate(self) -> dict[str, float]:
        """The SFT loss over the validation split (teacher-forced, no generation): the mean over its rows.

        Data-parallel shares are equal in size (the controller pads the last one by repeating rows), so a batch's
        loss is the mean of its shares' losses.
        """
        total, rows = 0.0, 0
        for batch in self.val_batches():
            shares = self.workers.validation_loss(batch)
            total += sum(share["loss"] for share in shares) / len(shares) * len(batch)
            rows += len(batch)
        return {"val/sft_loss": total / rows}

    def saves_step(self, last: bool) -> bool:
        """The last step is saved whatever ``trainer.save_freq`` says: the stage's product is the model merged from
        that checkpoint, which the RL stage starts from."""
        return last or super().saves_step(last)
