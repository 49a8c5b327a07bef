"""MR-SP stage 1 for audio: each audio's tower chunks split over the SP group, encoded, then all-gathered.

An audio tower of the Whisper kind cuts an audio's log-mel frames into chunks of ``chunk_frames``
and runs every layer within a chunk (both convolutions on the chunk alone, attention bounded by the chunks), then
averages pairs of positions. A chunk's output therefore does not depend on the other chunks, and a run of whole chunks
that starts at an even position after the first (stride-2) convolution pools exactly the pairs the whole audio pools:
encoding such runs separately and concatenating their outputs gives the audio's features. (``chunk_frames / 2`` must
be even so every chunk boundary is such a position; the encoder checks it.) So the chunks of all audios are dealt out
like video slices (:func:`~longrl.mrsp.frames.plan_frame_shards`: one contiguous run per rank, balanced by frames),
each rank encodes its runs, and one all-gather rebuilds every audio's features, in order, on every rank.

As with video, the tower is FSDP-sharded over the whole world, so when any rank has audio every rank runs it, on a
dummy chunk when its share is empty. A row's audio features follow its visual ones in the row's feature stream
(``video_embeds``), the order its prompt puts the media in (images, video, then audio).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch

from longrl.mrsp.collectives import gather_rows
from longrl.mrsp.encode import _anyone_has_video
from longrl.mrsp.frames import plan_frame_shards
from longrl.mrsp.groups import SequenceParallelGroups

__all__ = ["AudioEncoder", "append_row_audio", "encode_row_audio"]


class AudioEncoder(Protocol):
    """A model's audio tower seen as: log-mel pieces (whole chunks of one audio) -> their feature rows, in order."""

    chunk_frames: int  # log-mel frames per chunk the tower encodes independently

    def __call__(self, pieces: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(mel, frames_i)`` pieces -> the features of every piece, concatenated in order."""
        ...

    def num_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """Feature rows the tower gives for audios of ``frames`` log-mel frames each."""
        ...

    def dummy_inputs(self, device: torch.device) -> list[torch.Tensor]:
        """The smallest valid input (one chunk), for ranks with nothing to encode."""
        ...

    def row_audio(self, row: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """A row's audios as ``(mel, frames)`` log-mel tensors without their padding (``[]`` for a row without
        audio), read from the row's inputs."""
        ...


def encode_row_audio(
    encoder: AudioEncoder,
    rows: Sequence[Mapping[str, torch.Tensor]],
    groups: SequenceParallelGroups,
    device: torch.device,
    num_chunks: int = 1,
    sharded_tower: bool = True,
) -> list[torch.Tensor | None]:
    """Per row, the features of its audios in order (``None`` for a row without audio).

    ``rows`` are the per-row inputs (read by ``encoder.row_audio``), identical on every rank of the SP group.
    ``num_chunks`` bounds the all-gather's buffers (``worker.rollout.num_chunk_seq``); ``sharded_tower`` as for
    :func:`~longrl.mrsp.encode.encode_row_videos`.
    """
    audios = [(index, frames) for index, row in enumerate(rows) for frames in encoder.row_audio(row)]
    if not _anyone_has_video(bool(audios), device, sharded_tower):
        return [None] * len(rows)
    chunk = encoder.chunk_frames
    lengths = [frames.shape[1] for _, frames in audios]
    grids = [(-(-length // chunk), 1, chunk) for length in lengths]
    mine = plan_frame_shards(grids, groups.sp_size)[groups.sp_rank] if audios else []
    if mine:
        local = encoder([audios[piece.video][1][:, piece.t_start * chunk : piece.t_end * chunk].to(device)
                         for piece in mine])
    else:
        local = encoder(encoder.dummy_inputs(device))[:0]
    features = gather_rows(local, groups.group, num_chunks)
    tokens_per_audio = encoder.num_tokens(torch.tensor(lengths, dtype=torch.long)).tolist()
    if features.shape[0] != sum(tokens_per_audio):
        raise RuntimeError(f"gathered {features.shape[0]} audio feature rows for audios of {lengths} frames "
                           f"({sum(tokens_per_audio)} expected)")
    out: list[torch.Tensor | None] = [None] * len(rows)
    for (index, _), features_of_audio in zip(audios, torch.split(features, tokens_per_audio)):
        previous = out[index]
        out[index] = features_of_audio if previous is None else torch.cat([previous, features_of_audio])
    return out


def append_row_audio(visual: Sequence[torch.Tensor | None],
                     audio: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Each row's feature stream: its visual features, then its audio features (``None`` for a row with neither)."""
    out: list[torch.Tensor | None] = []
    for row_visual, row_audio in zip(visual, audio, strict=True):
        present = [features for features in (row_visual, row_audio) if features is not None]
        out.append(torch.cat(present) if present else None)
    return out
