"""Which frames of a video a run takes and at what size, read from the config in one place: the dataset decodes by
them and the embedding cache keys its entries by them, so the two always agree."""

from __future__ import annotations

from longrl.config.schema import DataConfig, RolloutConfig
from longrl.data.video import FrameSampling
from longrl.models.registry import ModelAdapter


def frame_sampling(rollout: RolloutConfig) -> FrameSampling:
    """Long-RL keeps the frame-sampling knobs under ``worker.rollout``; the data layer reads them from there."""
    return FrameSampling(num_frames=rollout.num_video_frames, fps=rollout.fps, max_frames=rollout.max_video_frames)


def frame_max_pixels(data: DataConfig, rollout: RolloutConfig, adapter: ModelAdapter) -> int:
    """``data.max_pixels``, tightened by ``worker.rollout.tokens_per_frame`` when that is set."""
    if rollout.tokens_per_frame is None:
        return data.max_pixels
    return min(data.max_pixels, rollout.tokens_per_frame * adapter.video_pixels_per_token)
