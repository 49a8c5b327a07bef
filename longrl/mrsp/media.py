"""MR-SP stage 1 over every medium of a row: its visual features (images, video) then its audio's, as one stream."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from longrl.mrsp.audio import AudioEncoder, append_row_audio, encode_row_audio
from longrl.mrsp.encode import VideoEncoder, encode_row_videos
from longrl.mrsp.groups import SequenceParallelGroups

__all__ = ["encode_row_media"]


def encode_row_media(
    video_encoder: VideoEncoder | None,
    audio_encoder: AudioEncoder | None,
    rows: Sequence[Mapping[str, torch.Tensor]],
    groups: SequenceParallelGroups,
    device: torch.device,
    num_chunks: int = 1,
    sharded_tower: bool = True,
) -> list[torch.Tensor | None]:
    """Per row, its feature stream in placeholder order (``None`` for a row without media): the towers a family has
    (a ``None`` encoder is skipped), with the arguments of :func:`~longrl.mrsp.encode.encode_row_videos`."""
    features: list[torch.Tensor | None] = [None] * len(rows)
    if video_encoder is not None:
        features = encode_row_videos(video_encoder, rows, groups, device, num_chunks, sharded_tower)
    if audio_encoder is not None:
        features = append_row_audio(features, encode_row_audio(audio_encoder, rows, groups, device, num_chunks,
                                                               sharded_tower))
    return features
