"""A prompt loader whose position is part of the checkpoint, so a resumed run sees exactly the batches it would have.

Epoch ``e`` visits the dataset in the order of ``torch.randperm`` drawn from a generator seeded with
``seed + e`` (or in file order without shuffling): the order depends on nothing but the seed and the epoch, so
a restarted process rebuilds it. The position is ``(epoch, batches consumed in that epoch)``; it advances when a
batch is handed to the caller, not when a worker process prefetches it, so ``state_dict()`` taken between steps
names the next batch the trainer has not seen. As in EasyR1, an incomplete last batch is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def epoch_order(num_samples: int, epoch: int, seed: int, shuffle: bool) -> list[int]:
    """The dataset indices of epoch ``epoch`` in visiting order."""
    if not shuffle:
        return list(range(num_samples))
    generator = torch.Generator().manual_seed(seed + epoch)
    return torch.randperm(num_samples, generator=generator).tolist()


class EpochBatchSampler(Sampler[list[int]]):
    """The index batches of one epoch from batch ``start_batch`` on: the resume position seen by DataLoader."""

    def __init__(self, order: Sequence[int], batch_size: int, start_batch: int) -> None:
        self.order, self.batch_size, self.start_batch = order, batch_size, start_batch

    def __len__(self) -> int:
        return len(self.order) // self.batch_size - self.start_batch

    def __iter__(self) -> Iterator[list[int]]:
        for batch in range(self.start_batch, len(self.order) // self.batch_size):
            yield list(self.order[batch * self.batch_size : (batch + 1) * self.batch_size])


def _as_list(samples: list[Any]) -> list[Any]:
    """Default collate: hand the samples over as they are (the trainer decides how to stack them)."""
    return samples


class PromptLoader:
    """Batches of ``batch_size`` prompts over ``total_epochs`` epochs, resumable with ``state_dict``.

    ``collate_fn`` receives the list of samples of one batch (e.g. ``functools.partial(collate_left_padded,
    pad_token_id=...)``); with ``num_workers > 0`` it must be picklable. Iterating continues from the current
    position to the end of the last epoch.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        total_epochs: int = 1,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int = 0,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"data.rollout_batch_size must be positive, got {batch_size}")
        if total_epochs <= 0:
            raise ValueError(f"trainer.total_epochs must be positive, got {total_epochs}")
        self.num_samples = len(dataset)  # type: ignore[arg-type]
        if self.num_samples < batch_size:
            raise ValueError(
                f"the dataset has {self.num_samples} rows, fewer than data.rollout_batch_size={batch_size}: "
                "no complete batch can be formed (lower the batch size or add rows)"
            )
        self.dataset, self.batch_size, self.seed, self.shuffle = dataset, batch_size, seed, shuffle
        self.total_epochs = total_epochs
        self.collate_fn = collate_fn or _as_list
        self.num_workers = num_workers
        self.epoch = 0
        self.batches_in_epoch = 0
        self._stream: Iterator[Any] | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.total_epochs

    @property
    def steps_done(self) -> int:
        return self.epoch * self.steps_per_epoch + self.batches_in_epoch

    def __len__(self) -> int:
        """Batches left from the current position to the end of the last epoch."""
        return self.total_steps - self.steps_done

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch, "seed": self.seed,
                "batch_size": self.batch_size, "num_samples": self.num_samples}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a saved position; the data, seed and batch size must match, or the order would differ."""
        for key in ("seed", "batch_size", "num_samples"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"cannot resume the prompt loader: the checkpoint has {key}={state[key]} but this run has "
                    f"{getattr(self, key)}; the batch order would differ (restore the original data/seed settings)"
                )
        if not 0 <= state["batches_in_epoch"] < self.steps_per_epoch:
            raise ValueError(f"checkpointed batches_in_epoch={state['batches_in_epoch']} is outside "
                             f"[0, {self.steps_per_epoch})")
        self.epoch, self.batches_in_epoch = state["epoch"], state["batches_in_epoch"]
        self._stream = None

    def next_batch(self) -> Any:
        """The next batch from one running stream, for callers that draw batches one at a time (DAPO's dynamic
        sampling draws several per step); raises ``StopIteration`` after the last epoch."""
        if self._stream is None:
            self._stream = iter(self)
        return next(self._stream)

    def add_epoch(self) -> int:
        """Allow one more epoch past ``total_epochs`` and return its number: DAPO's dynamic sampling draws more batches
        than it makes steps, so it can run out before the last step. The epoch's order is ``seed + epoch`` as any
        other's, so a run resumed inside it sees the same batches."""
        self.total_epochs = max(self.total_epochs, self.epoch) + 1
        self._stream = None
        return self.total_epochs - 1

    def __iter__(self) -> Iterator[Any]:
        while self.epoch < self.total_epochs:
            order = epoch_order(self.num_samples, self.epoch, self.seed, self.shuffle)
            loader = DataLoader(
                self.dataset,
                batch_sampler=EpochBatchSampler(order, self.batch_size, self.batches_in_epoch),
                collate_fn=self.collate_fn,
                num_workers=self.num_workers,
            )
            for batch in loader:
                self._advance()
                yield batch

    def _advance(self) -> None:
        self.batches_in_epoch += 1
        if self.batches_in_epoch == self.steps_per_epoch:
            self.epoch, self.batches_in_epoch = self.epoch + 1, 0
