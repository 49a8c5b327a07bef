"""The local backend on the tiny Qwen2.5-VL through longrl.inference: n seeded replies per request, reproducible,
and a broken video costs only its own request (``None``, counted), not the batch or the run."""

from __future__ import annotations

import pytest

from lvreason.backends import Request
from lvreason.config import ModelConfig
from lvreason.local_backend import LocalBackend

pytestmark = pytest.mark.slow


def test_a_broken_video_fails_alone_and_sampling_is_reproducible(tmp_path, long_videos, tiny_model_dir):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes((long_videos / "cooking.mp4").read_bytes()[:2000])
    backend = LocalBackend(ModelConfig(backend="local", model=str(tiny_model_dir("qwen2_5_vl")), num_frames=2,
                                       max_pixels=4096), "rollout")
    requests = [Request("Which option?", video=str(long_videos / "cooking.mp4")), Request("Why?", video=str(broken)),
                Request("Which option?", video=str(long_videos / "sports" / "match.mp4"))]
    replies = backend.complete(requests, max_tokens=4, temperature=1.0, n=2, seeds=[1, 2, 3])
    assert replies[1] is None and backend.failures == 1
    assert [len(reply) for reply in (replies[0], replies[2])] == [2, 2]
    assert all(isinstance(text, str) for text in replies[0] + replies[2])
    again = backend.complete(requests, max_tokens=4, temperature=1.0, n=2, seeds=[1, 2, 3])
    assert again == replies and backend.failures == 2
