"""The embedding store and its keys: exact round trip, invalidation, corruption, concurrent writers."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from longrl.data.video import FrameSampling
from longrl.embeds.key import EmbeddingKeyer, tower_fingerprint
from longrl.embeds.store import CachedVideo, EmbeddingStore
from longrl.models import get_adapter


def _video(seed: int = 0) -> CachedVideo:
    generator = torch.Generator().manual_seed(seed)
    return CachedVideo(torch.randn(12, 8, generator=generator),
                       {"video_grid_thw": torch.tensor([[3, 2, 8]]), "second_per_grid_ts": torch.tensor([1.0])},
                       torch.arange(6, dtype=torch.float64) / 2)


def _keyer(tower: str = "t0", **sampling) -> EmbeddingKeyer:
    return EmbeddingKeyer(FrameSampling(**(sampling or {"num_frames": 16})), 12544, 3136, 28, tower)


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not really a video, only its identity matters here")
    return path


def test_round_trip_is_exact_and_atomic(tmp_path: Path, video_file: Path):
    store, keyer = EmbeddingStore(tmp_path / "cache"), _keyer()
    description = keyer.describe(video_file)
    key = keyer.digest(description)
    assert store.get(key, description) is None and not store.contains(key)
    size = store.put(key, description, _video())
    assert store.contains(key) and size == store.path(key).stat().st_size
    got = store.get(key, description)
    assert got.positions.keys() == {"video_grid_thw", "second_per_grid_ts"}
    for name, value in _video().tensors().items():
        assert torch.equal(got.tensors()[name], value) and got.tensors()[name].dtype == value.dtype
    assert [p.name for p in store.path(key).parent.iterdir()] == [f"{key}.safetensors"]  # no temporary left


def test_key_changes_with_sampling_pixels_tower_and_the_file(video_file: Path):
    base = _keyer()
    key = base.digest(base.describe(video_file))
    assert key == _keyer().digest(_keyer().describe(video_file))
    others = [_keyer(num_frames=32), _keyer(fps=2.0), _keyer(num_frames=16, max_frames=8), _keyer(tower="t1"),
              EmbeddingKeyer(FrameSampling(num_frames=16), 50176, 3136, 28, "t0")]
    assert len({key, *(k.digest(k.describe(video_file)) for k in others)}) == 1 + len(others)
    os.utime(video_file, ns=(1, 1))  # the file changed
    assert base.digest(base.describe(video_file)) != key


def test_tower_fingerprint_follows_the_tower_weights_only(tiny_model_dir, tmp_path: Path):
    adapter = get_adapter("qwen2_5_vl")
    model_dir = tiny_model_dir("qwen2_5_vl")
    marker = adapter.vision_weight_marker
    fingerprint = tower_fingerprint(model_dir, marker)
    assert fingerprint == tower_fingerprint(model_dir, marker)
    model = adapter.load_model(model_dir)
    state = model.state_dict()
    with torch.no_grad():
        state["model.language_model.norm.weight"].add_(1.0)  # the text model changes: same tower
    model.save_pretrained(str(tmp_path / "text_changed"))
    assert tower_fingerprint(tmp_path / "text_changed", marker) == fingerprint
    with torch.no_grad():
        state["model.visual.merger.ln_q.weight"].add_(1.0)  # the tower changes
    model.save_pretrained(str(tmp_path / "tower_changed"))
    assert tower_fingerprint(tmp_path / "tower_changed", marker) != fingerprint
    other_seed = adapter.build_tiny(tmp_path / "seed1", seed=1)
    assert tower_fingerprint(other_seed, marker) != fingerprint


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "other_description"])
def test_bad_entry_is_reported_removed_and_read_as_a_miss(tmp_path: Path, video_file: Path, caplog, damage):
    store, keyer = EmbeddingStore(tmp_path / "cache"), _keyer()
    description = keyer.describe(video_file)
    key = keyer.digest(description)
    store.put(key, description, _video())
    path = store.path(key)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
        reason = "unreadable"
    elif damage == "flip_byte":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])  # inside the last tensor's bytes
        reason = "checksum mismatch"
    else:
        store.put(key, {**description, "tower": "another"}, _video())
        reason = "written for another video, sampling or vision tower"
    with caplog.at_level(logging.WARNING, logger="longrl.embeds.store"):
        assert store.get(key, description) is None
    assert f"embedding cache: {path} is {reason}" in caplog.text
    assert not path.exists()
    store.put(key, description, _video())  # recomputed
    assert torch.equal(store.get(key, description).features, _video().features)


def _hammer(root: str, key: str, description: str, seed: int, times: int) -> None:
    store = EmbeddingStore(root)
    for _ in range(times):
        store.put(key, json.loads(description), _video(seed))


def test_concurrent_writers_of_one_key_leave_one_valid_entry(tmp_path: Path, video_file: Path, caplog):
    keyer = _keyer()
    description = keyer.describe(video_file)
    key = keyer.digest(description)
    context = mp.get_context("spawn")
    workers = [context.Process(target=_hammer, args=(str(tmp_path), key, json.dumps(description), 0, 30))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    store = EmbeddingStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="longrl.embeds.store"):
        while any(worker.is_alive() for worker in workers):
            got = store.get(key, description)  # during the writes: no entry or a whole one, never a bad one
            if got is not None:
                assert torch.equal(got.features, _video(0).features)
    assert "embedding cache" not in caplog.text
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0
    assert torch.equal(store.get(key, description).features, _video(0).features)
    assert [p.name for p in store.path(key).parent.iterdir()] == [f"{key}.safetensors"]
