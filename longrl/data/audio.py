"""Read a row's audio, from a video's audio track or an audio file, as mono float32 samples at the model's rate.

PyAV (the library that already probes the videos) opens any container ffmpeg reads (mp4/aac, mkv, mp3, wav, ...),
decodes the first audio stream and resamples it with ffmpeg's resampler to mono at the rate the model's feature
extractor expects (16 kHz for Qwen2.5-Omni), so no second audio stack is needed. The header is read separately
(no packet decoded) so the dataset can check every row's audio and size its prompt before training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import av
import numpy as np

__all__ = ["AudioDecodeError", "AudioHeader", "NoAudioTrackError", "load_audio", "read_audio_header"]


class AudioDecodeError(ValueError):
    """A file's audio cannot be read; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot read audio from {self.path!r}: {reason}")


class NoAudioTrackError(AudioDecodeError):
    """The file is a readable container without an audio stream (e.g. a silent video)."""


@dataclass(frozen=True)
class AudioHeader:
    """What the container states about its first audio stream."""

    path: str
    duration_s: float  # 0.0 where the container states no duration

    def num_samples(self, sampling_rate: int) -> int:
        """Samples of the stream once resampled to ``sampling_rate`` (an estimate: from the stated duration)."""
        return round(self.duration_s * sampling_rate)


def _open(path: str) -> av.container.InputContainer:
    if not os.path.isfile(path):
        raise AudioDecodeError(path, "file does not exist" if not os.path.exists(path) else "not a regular file")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as err:
        raise AudioDecodeError(path, f"not a readable media container ({err})") from err
    if not container.streams.audio:
        kinds = sorted({stream.type for stream in container.streams}) or ["none"]
        container.close()
        raise NoAudioTrackError(path, f"the file has no audio track (streams: {', '.join(kinds)})")
    return container


def read_audio_header(path: str | os.PathLike) -> AudioHeader:
    """The audio facts of ``path`` from its header; raises ``AudioDecodeError`` (``NoAudioTrackError``) otherwise."""
    path = os.fspath(path)
    with _open(path) as container:
        stream = container.streams.audio[0]
        if stream.duration:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = container.duration / av.time_base if container.duration else 0.0
        return AudioHeader(path, duration)


def load_audio(path: str | os.PathLike, sampling_rate: int) -> np.ndarray:
    """The first audio stream of ``path`` as ``(samples,)`` float32 mono at ``sampling_rate`` Hz (channels mixed
    down by ffmpeg's resampler)."""
    path = os.fspath(path)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
    chunks: list[np.ndarray] = []
    try:
        with _open(path) as container:
            for frame in container.decode(container.streams.audio[0]):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.FFmpegError as err:
        raise AudioDecodeError(path, f"PyAV failed while decoding the audio ({err})") from err
    if not chunks or sum(chunk.size for chunk in chunks) == 0:
        raise AudioDecodeError(path, "the audio track holds no samples")
    return np.concatenate(chunks).astype(np.float32, copy=False)
