"""Media with sound, encoded locally with PyAV: mp4s of H.264 video with an AAC audio track, and audio-only files.

The audio is written as stereo at 44.1 kHz (neither the model's rate nor mono), so reading it back exercises the
downmix and the resampling to 16 kHz.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

RATE = 44_100
_FRAME_SAMPLES = 1024  # AAC's frame size


def tone(seconds: float, frequency: float, rate: int = RATE) -> np.ndarray:
    """A sine at ``frequency`` Hz, amplitude 0.3, as float32 samples."""
    return (0.3 * np.sin(2 * np.pi * frequency * np.arange(round(seconds * rate)) / rate)).astype(np.float32)


def noise(seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    """Seeded white noise of amplitude ~0.1, as float32 samples."""
    return (0.1 * np.random.default_rng(seed).standard_normal(round(seconds * rate))).astype(np.float32)


def _add_audio(container: av.container.OutputContainer, codec: str) -> av.audio.stream.AudioStream:
    stream = container.add_stream(codec, rate=RATE)
    stream.layout = "stereo"
    return stream


def _mux_audio(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
               samples: np.ndarray) -> None:
    stereo = np.stack([samples, samples])
    for start in range(0, samples.shape[0], _FRAME_SAMPLES):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, start:start + _FRAME_SAMPLES]),
                                           format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = RATE, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_video(path: Path, frames: np.ndarray, fps: int, audio: np.ndarray | None) -> Path:
    """An mp4 of ``frames`` ((T, H, W, 3) uint8) as H.264, with ``audio`` (samples at 44.1 kHz) as an AAC track, or
    silent when ``audio`` is None."""
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(fps))
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt = "yuv420p"
        video.codec_context.thread_count = 1
        sound = _add_audio(container, "aac") if audio is not None else None
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        if sound is not None:
            _mux_audio(container, sound, audio)
    return path


def write_audio(path: Path, audio: np.ndarray) -> Path:
    """An audio-only file: MP3 for a ``.mp3`` path, else AAC in an mp4 container (e.g. ``.m4a``)."""
    mp3 = path.suffix == ".mp3"
    with av.open(str(path), "w", format="mp3" if mp3 else "mp4") as container:
        _mux_audio(container, _add_audio(container, "mp3" if mp3 else "aac"), audio)
    return path
