"""Deterministic order, drop-last batching and exact resumption of the prompt loader."""

from __future__ import annotations

import functools

import pytest
import torch
from torch.utils.data import Dataset

from longrl.data.dataset import collate_left_padded
from longrl.trainer.dataloader import PromptLoader, epoch_order


class Numbers(Dataset):
    """Sample i is i, so a batch shows exactly which rows it holds."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def _loader(n=10, batch=3, epochs=2, **kwargs) -> PromptLoader:
    return PromptLoader(Numbers(n), batch_size=batch, seed=7, total_epochs=epochs, **kwargs)


def test_epoch_order_is_randperm_of_seed_plus_epoch():
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(9)).tolist()
    assert epoch_order(10, 2, seed=7, shuffle=True) == expected
    assert epoch_order(4, 5, seed=7, shuffle=False) == [0, 1, 2, 3]


def test_batches_follow_the_epoch_orders_and_drop_the_incomplete_batch():
    loader = _loader()
    assert (loader.steps_per_epoch, loader.total_steps, len(loader)) == (3, 6, 6)
    batches = list(loader)
    expected = []
    for epoch in (0, 1):
        order = epoch_order(10, epoch, seed=7, shuffle=True)
        expected += [order[0:3], order[3:6], order[6:9]]
    assert batches == expected
    assert loader.state_dict()["epoch"] == 2 and len(loader) == 0


@pytest.mark.parametrize("consumed", [3, 4, 2])  # 3: resume exactly at the epoch boundary; 4: inside epoch 1
def test_resume_gives_the_uninterrupted_next_batch(consumed):
    reference = list(_loader())
    first = _loader()
    it = iter(first)
    seen = [next(it) for _ in range(consumed)]
    state = first.state_dict()
    resumed = _loader()
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert seen == reference[:consumed]
    assert rest == reference[consumed:]
    assert resumed.steps_done == 6


def test_next_batch_draws_one_stream_and_resumes():
    reference = list(_loader())
    loader = _loader()
    assert [loader.next_batch() for _ in range(4)] == reference[:4]
    resumed = _loader()
    resumed.load_state_dict(loader.state_dict())
    assert [resumed.next_batch() for _ in range(2)] == reference[4:]
    with pytest.raises(StopIteration):
        resumed.next_batch()


def test_add_epoch_continues_past_the_last_epoch_in_seed_order_and_resumes():
    """DAPO's refill: after the 2 epochs the stream goes on into epoch 2, ordered by seed + 2, resumable inside it."""
    loader = _loader(n=6, batch=3, epochs=2)
    for _ in range(4):
        loader.next_batch()
    with pytest.raises(StopIteration):
        loader.next_batch()
    assert loader.add_epoch() == 2
    order = epoch_order(6, 2, seed=7, shuffle=True)
    assert loader.next_batch() == order[:3]
    resumed = _loader(n=6, batch=3, epochs=2)
    resumed.load_state_dict(loader.state_dict())
    with pytest.raises(StopIteration):  # a resumed run past its epochs refills the same way
        resumed.next_batch()
    assert resumed.add_epoch() == 2
    assert resumed.next_batch() == order[3:]


def test_state_names_the_next_unseen_batch():
    loader = _loader()
    it = iter(loader)
    for _ in range(3):
        next(it)
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["batches_in_epoch"] == 0
    next(it)
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["batches_in_epoch"] == 1


def test_workers_give_the_same_batches_and_positions():
    reference = list(_loader())
    loader = _loader(num_workers=2)
    it = iter(loader)
    first = [next(it) for _ in range(4)]
    assert first == reference[:4]
    assert loader.steps_done == 4  # prefetched batches do not count as consumed
    resumed = _loader(num_workers=2)
    resumed.load_state_dict(loader.state_dict())
    assert list(resumed) == reference[4:]


def test_resume_with_other_settings_is_refused():
    state = _loader().state_dict()
    other = PromptLoader(Numbers(10), batch_size=3, seed=8, total_epochs=2)
    with pytest.raises(ValueError, match="seed=7 but this run has 8"):
        other.load_state_dict(state)


def test_too_few_rows_for_one_batch_is_an_error():
    with pytest.raises(ValueError, match="fewer than data.rollout_batch_size=4"):
        PromptLoader(Numbers(3), batch_size=4, seed=0)


class Prompts(Dataset):
    """Minimal dataset samples in the shape collate_left_padded expects (text only)."""

    lengths = [2, 4, 3]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict:
        ids = torch.arange(1, self.lengths[index] + 1)
        fields = dict.fromkeys(("question", "options", "answer", "reasoning", "task", "video_path", "timestamps"))
        return {"uid": f"u{index}", "inputs": {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, **fields}


def test_pluggable_collate_left_pads():
    loader = PromptLoader(Prompts(), batch_size=2, seed=0, shuffle=False,
                          collate_fn=functools.partial(collate_left_padded, pad_token_id=99))
    batch = next(iter(loader))
    assert batch["uid"] == ["u0", "u1"]
    assert batch["input_ids"].tolist() == [[99, 99, 1, 2], [1, 2, 3, 4]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
