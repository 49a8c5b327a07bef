"""Tests for longrl.protocol.Batch: every row operation checked against hand-written expected values."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch

from longrl.protocol import Batch


def make_batch() -> Batch:
    """Four rows whose values identify the row: row i has ids [10i, 10i+1], score i/2, uid "u{i}"."""
    return Batch.from_dict(
        tensors={
            "ids": torch.tensor([[0, 1], [10, 11], [20, 21], [30, 31]]),
            "score": torch.tensor([0.0, 0.5, 1.0, 1.5]),
        },
        non_tensors={
            "uid": ["u0", "u1", "u2", "u3"],
            # per-sample videos of different frame counts: only an object array can hold them
            "video": [torch.full((i + 1, 2), float(i)) for i in range(4)],
            "info": [{"row": i} for i in range(4)],
            "frames": np.array([1, 2, 3, 4]),
        },
        meta={"step": 7},
    )


def assert_same(actual: Any, expected: Any) -> None:
    """Exact comparison written independently of the module's own equality helper."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor)
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        assert torch.equal(actual, expected)
    elif isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray)
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        for a, e in zip(actual.tolist() if expected.dtype != object else actual, expected):
            assert_same(a, e)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys()
        for key in expected:
            assert_same(actual[key], expected[key])
    else:
        assert actual == expected


def assert_batches_equal(actual: Batch, expected: Batch) -> None:
    assert len(actual) == len(expected)
    assert list(actual.tensors.keys()) == list(expected.tensors.keys())
    for key in expected.tensors.keys():
        assert_same(actual.tensors[key], expected.tensors[key])
    assert list(actual.non_tensors) == list(expected.non_tensors)
    for key in expected.non_tensors:
        assert_same(actual.non_tensors[key], expected.non_tensors[key])
    assert_same(actual.meta, expected.meta)


def rows_of(batch: Batch) -> list[int]:
    """Which original rows a derived batch holds, read from the ids tensor and cross-checked on every key."""
    rows = (batch.tensors["ids"][:, 0] // 10).tolist()
    assert batch.tensors["score"].tolist() == [r / 2 for r in rows]
    assert batch.non_tensors["uid"].tolist() == [f"u{r}" for r in rows]
    assert [v.shape[0] for v in batch.non_tensors["video"]] == [r + 1 for r in rows]
    assert [float(v[0, 0]) for v in batch.non_tensors["video"]] == [float(r) for r in rows]
    assert [d["row"] for d in batch.non_tensors["info"]] == rows
    assert batch.non_tensors["frames"].tolist() == [r + 1 for r in rows]
    return rows


# ---------------------------------------------------------------------- building


def test_from_dict_builds_object_arrays_and_len() -> None:
    batch = make_batch()
    assert len(batch) == 4
    assert batch.non_tensors["uid"].dtype == object
    assert batch.non_tensors["video"].shape == (4,)
    assert batch.non_tensors["video"][2].shape == (3, 2)
    assert batch.non_tensors["frames"].dtype == np.array([1]).dtype
    assert rows_of(batch) == [0, 1, 2, 3]
    assert batch.meta == {"step": 7}


def test_from_dict_mismatch_names_key_and_size() -> None:
    with pytest.raises(ValueError, match=r"tensors\['b'\] has batch size 2, but tensors\['a'\] has 3"):
        Batch.from_dict(tensors={"a": torch.zeros(3), "b": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"non_tensors\['uid'\] has batch size 4, but tensors\['a'\] has 3"):
        Batch.from_dict(tensors={"a": torch.zeros(3)}, non_tensors={"uid": ["a", "b", "c", "d"]})
    with pytest.raises(TypeError, match=r"tensors\['a'\] must be a torch.Tensor with a batch dimension"):
        Batch.from_dict(tensors={"a": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="pass batch_size="):
        Batch.from_dict()


def test_non_tensor_only_batch_with_explicit_size() -> None:
    batch = Batch.from_dict(non_tensors={"uid": ["x", "y", "z"]})
    assert len(batch) == 3
    assert batch[1:].non_tensors["uid"].tolist() == ["y", "z"]
    assert len(Batch.from_dict(batch_size=5)) == 5


# ---------------------------------------------------------------------- indexing


def test_index_by_int_keeps_batch_dim() -> None:
    batch = make_batch()
    assert rows_of(batch[2]) == [2]
    assert rows_of(batch[-1]) == [3]
    assert batch[2].tensors["ids"].shape == (1, 2)
    with pytest.raises(IndexError, match="row 4 is out of range"):
        batch[4]


def test_index_by_slice_and_array() -> None:
    batch = make_batch()
    assert rows_of(batch[1:3]) == [1, 2]
    assert rows_of(batch[::2]) == [0, 2]
    assert rows_of(batch[::-1]) == [3, 2, 1, 0]
    assert rows_of(batch[np.array([3, 0, 0])]) == [3, 0, 0]
    assert rows_of(batch[torch.tensor([1, -1])]) == [1, 3]
    assert rows_of(batch[[2]]) == [2]
    assert len(batch[[]]) == 0
    with pytest.raises(IndexError, match="out of range"):
        batch[np.array([0, 4])]


def test_bool_mask_keeps_non_tensors_aligned() -> None:
    batch = make_batch()
    mask = batch.tensors["score"] > 0.7  # rows 2 and 3
    picked = batch[mask]
    assert rows_of(picked) == [2, 3]
    assert picked.non_tensors["uid"].tolist() == ["u2", "u3"]
    assert_same(picked.non_tensors["video"][0], torch.full((3, 2), 2.0))
    assert rows_of(batch[np.array([True, False, False, True])]) == [0, 3]
    with pytest.raises(IndexError, match=r"one entry per row \(4\), got 3"):
        batch[np.array([True, False, True])]


# ---------------------------------------------------------------------- select / union


def test_select() -> None:
    batch = make_batch()
    picked = batch.select(["score"], ["uid"])
    assert list(picked.tensors.keys()) == ["score"]
    assert list(picked.non_tensors) == ["uid"]
    assert_same(picked.tensors["score"], torch.tensor([0.0, 0.5, 1.0, 1.5]))
    assert picked.non_tensors["uid"].tolist() == ["u0", "u1", "u2", "u3"]
    assert picked.meta == {"step": 7}
    everything_but_non_tensors = batch.select(non_tensor_keys=[])
    assert list(everything_but_non_tensors.tensors.keys()) == ["ids", "score"]
    assert everything_but_non_tensors.non_tensors == {}
    assert len(batch.select([], [])) == 4
    with pytest.raises(KeyError, match=r"no tensor key\(s\) \['missing'\]"):
        batch.select(["missing"])


def test_union_merges_and_rejects_conflicts() -> None:
    batch = make_batch()
    extra = Batch.from_dict(
        tensors={"reward": torch.tensor([1.0, 0.0, 1.0, 0.0]), "score": torch.tensor([0.0, 0.5, 1.0, 1.5])},
        non_tensors={"video": [torch.full((i + 1, 2), float(i)) for i in range(4)]},  # equal copies: allowed
        meta={"timing": 1.5, "step": 7},
    )
    merged = batch.union(extra)
    assert list(merged.tensors.keys()) == ["ids", "score", "reward"]
    assert_same(merged.tensors["reward"], torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert rows_of(merged) == [0, 1, 2, 3]
    assert merged.meta == {"step": 7, "timing": 1.5}
    assert "reward" not in batch.tensors.keys()  # union returns a new batch

    conflict = Batch.from_dict(tensors={"score": torch.tensor([0.0, 0.5, 1.0, 9.0])})
    with pytest.raises(ValueError, match=r"union conflict: tensors\['score'\]"):
        batch.union(conflict)
    other_video = [torch.full((i + 1, 2), float(i)) for i in range(4)]
    other_video[3] = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"union conflict: non_tensors\['video'\]"):
        batch.union(Batch.from_dict(non_tensors={"video": other_video}))
    with pytest.raises(ValueError, match=r"union conflict: tensors\['score'\]"):  # same values, other dtype
        batch.union(Batch.from_dict(tensors={"score": torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64)}))
    with pytest.raises(ValueError, match=r"meta conflict: meta\['step'\]"):
        batch.union(Batch.from_dict(batch_size=4, meta={"step": 8}))
    with pytest.raises(ValueError, match="cannot union batches of 4 and 2 rows"):
        batch.union(batch[:2])


# ---------------------------------------------------------------------- split / chunk / concat


def test_split_sizes_and_round_trip() -> None:
    batch = make_batch()
    parts = batch.split(3)
    assert [len(p) for p in parts] == [3, 1]
    assert [rows_of(p) for p in parts] == [[0, 1, 2], [3]]
    assert_batches_equal(Batch.concat(parts), batch)
    assert [len(p) for p in batch.split(4)] == [4]
    with pytest.raises(ValueError, match="split size must be positive"):
        batch.split(0)


def test_chunk_sizes_and_round_trip() -> None:
    batch = Batch.concat([make_batch(), make_batch()[:3]])  # 7 rows: 0 1 2 3 0 1 2
    parts = batch.chunk(3)
    assert [len(p) for p in parts] == [3, 2, 2]
    assert [rows_of(p) for p in parts] == [[0, 1, 2], [3, 0], [1, 2]]
    assert_batches_equal(Batch.concat(parts), batch)
    assert [len(p) for p in batch.chunk(7)] == [1] * 7
    with pytest.raises(ValueError, match="cannot chunk a batch of 7 rows into 8"):
        batch.chunk(8)


def test_concat_rejects_different_keys() -> None:
    batch = make_batch()
    with pytest.raises(KeyError, match=r"batch 1 tensor keys differ from batch 0 \(missing \['ids'\], extra \[\]\)"):
        Batch.concat([batch, batch.select(["score"])])
    with pytest.raises(KeyError, match=r"batch 1 non-tensor keys differ .*missing \['frames', 'info'\]"):
        Batch.concat([batch, batch.select(non_tensor_keys=["uid", "video"])])
    wider = Batch.from_dict(tensors={"ids": torch.zeros(1, 3, dtype=torch.long)})
    with pytest.raises(ValueError, match=r"cannot join tensors\['ids'\] with shapes \[\(4, 2\), \(1, 3\)\]"):
        Batch.concat([batch.select(["ids"], []), wider])
    with pytest.raises(ValueError, match="at least one batch"):
        Batch.concat([])


def test_object_arrays_of_tensors_survive_slice_concat_pickle() -> None:
    batch = make_batch()
    joined = Batch.concat([batch[2:], batch[:1]])
    videos = joined.non_tensors["video"]
    assert videos.dtype == object and videos.shape == (3,)
    assert [tuple(v.shape) for v in videos] == [(3, 2), (4, 2), (1, 2)]
    assert_same(videos[1], torch.full((4, 2), 3.0))
    restored = pickle.loads(pickle.dumps(joined))
    assert [tuple(v.shape) for v in restored.non_tensors["video"]] == [(3, 2), (4, 2), (1, 2)]
    assert_batches_equal(restored, joined)
    assert rows_of(restored) == [2, 3, 0]


# ---------------------------------------------------------------------- repeat / pad


def test_repeat_interleaved_vs_tiled() -> None:
    batch = make_batch()[:2]  # rows a=0, b=1
    assert rows_of(batch.repeat(2, interleave=True)) == [0, 0, 1, 1]
    assert rows_of(batch.repeat(2, interleave=False)) == [0, 1, 0, 1]
    assert rows_of(batch.repeat(3)) == [0, 0, 0, 1, 1, 1]
    repeated = batch.repeat(2)
    # the n rollouts of a prompt share its video object instead of copying it
    assert repeated.non_tensors["video"][0] is repeated.non_tensors["video"][1]
    with pytest.raises(ValueError, match="repeat count must be positive"):
        batch.repeat(0)


def test_pad_reuses_rows_and_unpad_restores() -> None:
    batch = make_batch()[:3]
    padded, pad_size = batch.pad_to_multiple(4)
    assert pad_size == 1 and rows_of(padded) == [0, 1, 2, 0]
    padded, pad_size = batch.pad_to_multiple(8)
    assert pad_size == 5 and rows_of(padded) == [0, 1, 2, 0, 1, 2, 0, 1]
    assert_batches_equal(padded.unpad(pad_size), batch)
    same, pad_size = batch.pad_to_multiple(3)
    assert pad_size == 0
    assert_batches_equal(same, batch)
    assert_batches_equal(batch.unpad(0), batch)
    with pytest.raises(ValueError, match=r"pad_size must be in \[0, 3\], got 4"):
        batch.unpad(4)


def test_meta_is_copied_per_derived_batch() -> None:
    batch = make_batch()
    part = batch[:2]
    part.meta["timing"] = 1.0
    assert batch.meta == {"step": 7}


def test_to_device_moves_tensors_only() -> None:
    batch = make_batch()
    moved = batch.to("cpu")
    assert moved.tensors.device == torch.device("cpu")
    assert moved.non_tensors["video"] is batch.non_tensors["video"]
    assert_batches_equal(moved, batch)


# ---------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    # address="local" always starts a private instance, never joins another process's cluster
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_put_get_round_trip(ray_session) -> None:
    batch = make_batch()
    restored = ray_session.get(ray_session.put(batch))
    assert restored is not batch
    assert_batches_equal(restored, batch)
    assert rows_of(restored) == [0, 1, 2, 3]


@pytest.mark.slow
def test_ray_worker_operates_on_batch(ray_session) -> None:
    """A worker process unpickles the batch, runs row ops and sends a batch back (starts a Ray worker: ~4 s)."""

    @ray_session.remote
    def repeat_then_stride(batch: Batch) -> Batch:
        return batch.repeat(2)[::3]

    result = ray_session.get(repeat_then_stride.remote(make_batch()))
    assert rows_of(result) == [0, 1, 3]  # rows of [0,0,1,1,2,2,3,3] at positions 0, 3, 6
    assert result.meta == {"step": 7}
