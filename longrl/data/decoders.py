"""Container validation and the two frame decoders (decord and PyAV) behind ``longrl.data.video``.

Why a PyAV probe runs before any decoding: decord trusts the container's index. On a truncated mp4 whose
index sits at the front ("faststart"), decord reports every frame the index names although the data of
most of them is missing; reading such frames raises at best, and in known decord bugs hangs forever in
native code holding the GIL (a Python timeout cannot stop it) or substitutes earlier frames. The probe
demuxes every packet of the video stream (reading, not decoding: cheap next to decoding) and checks the
packet count against the count the container declares, so a damaged file is rejected before decord sees
it. The probe's per-frame presentation timestamps also give both decoders one frame numbering: frame
``i`` is the frame with the ``i``-th smallest timestamp, which is how decord numbers frames too.

Rotation: phones store portrait video as landscape frames plus a display matrix saying "turn this a quarter".
decord applies it, PyAV hands over the stored frame, so the probe reads the rotation (from the first decoded
frame: PyAV exposes it nowhere else), states the size as displayed, and the PyAV path turns its frames itself.

Both decoders return exactly the frames asked for, or raise: a frame that cannot be produced is never
replaced by a neighbour.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from PIL import Image

# Frames decoded per decord call: bounds the memory held at source resolution before resizing.
_DECORD_CHUNK = 16


class VideoDecodeError(ValueError):
    """A video file cannot be decoded; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path!r}: {reason}")


class DecoderDisagreesError(VideoDecodeError):
    """decord numbers or times the frames of a valid file differently from the container.

    The file itself is readable (the probe accepted it), so ``backend="auto"`` retries with PyAV.
    """


@dataclass(frozen=True)
class VideoProbe:
    """What the container says about its video stream, checked against the packets actually present."""

    path: str
    stream_index: int
    num_frames: int
    fps: float
    height: int  # as displayed, i.e. after ``rotation``
    width: int
    time_base: Fraction
    frame_pts: np.ndarray  # (num_frames,) int64, ascending: frame i has the i-th smallest timestamp
    keyframe_pts: np.ndarray  # ascending timestamps of the frames a decoder can start from
    duration: float  # seconds from the first frame's start to the last frame's end
    rotation: int = 0  # degrees (0, 90, 180 or 270) a player turns the stored frames counterclockwise

    @property
    def frame_times(self) -> np.ndarray:
        """Seconds of each frame from the first frame of the stream (float64)."""
        return (self.frame_pts - self.frame_pts[0]).astype(np.float64) * float(self.time_base)


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file does not exist")
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")


def _stream_fps(stream: av.video.stream.VideoStream, frame_pts: np.ndarray, time_base: Fraction) -> float:
    """Average frame rate as the container states it, else measured from the frame timestamps."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return float(rate)
    span = float((frame_pts[-1] - frame_pts[0]) * time_base)
    return (len(frame_pts) - 1) / span if span > 0 else 1.0


def quarter_turns(angle: float) -> int:
    """A display rotation in degrees as counterclockwise quarter turns (0-3); 0 for an angle that is not one.

    FFmpeg's own player and decord turn only by multiples of 90 degrees, so an odd angle is ignored alike.
    """
    turns = round(angle / 90)
    return turns % 4 if abs(angle - 90 * turns) < 1 else 0


def _rotation_of(frames: Iterator[av.VideoFrame]) -> int:
    """The display rotation (degrees, 0/90/180/270) carried by the first of ``frames``; 0 when none decodes."""
    first = next(frames, None)
    return 0 if first is None else 90 * quarter_turns(first.rotation)


def _displayed(height: int, width: int, rotation: int) -> tuple[int, int]:
    return (width, height) if rotation in (90, 270) else (height, width)


def _stated_end(stream: av.video.stream.VideoStream) -> float | None:
    """Where the container says the video stream ends, in seconds, if it says so for this stream alone.

    Matroska keeps it in a per-stream ``DURATION`` tag ("HH:MM:SS.fraction"); the container-wide duration
    is not used because an audio stream may legitimately outlast the video.
    """
    if stream.duration:
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base)
    tag = next((value for key, value in stream.metadata.items() if key.upper() == "DURATION"), None)
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (AttributeError, ValueError):
        return None


def _check_duration(path: str, stream: av.video.stream.VideoStream, frames_end: float, fps: float) -> None:
    stated = _stated_end(stream)
    if stated is not None and stated - frames_end > 0.5 / fps:  # more than half a frame is missing
        raise VideoDecodeError(
            path,
            f"frames end at {frames_end:.2f}s but the container says the video runs to {stated:.2f}s "
            "(truncated or damaged file)",
        )


@dataclass(frozen=True)
class VideoHeader:
    """What the container header states, read without touching the packets (cheap even for hour-long files).

    ``num_frames`` is the declared frame count, or duration x fps where the container declares none
    (Matroska/WebM): an estimate for sizing prompts before training, not the verified count of ``probe_video``.
    """

    path: str
    num_frames: int
    fps: float
    height: int  # as displayed (after the display rotation)
    width: int


@contextmanager
def _open_video_stream(path: str) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open ``path`` and yield its best video stream, rejecting files that have none or cannot say its size."""
    _check_file(path)
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as err:
        raise VideoDecodeError(path, f"not a readable media container ({err})") from err
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoDecodeError(path, f"contains no video stream (streams: {', '.join(kinds)})")
        stream = container.streams.best("video")
        if stream.codec_context is None:
            raise VideoDecodeError(path, "no decoder available for the video stream's codec")
        if stream.codec_context.width < 1 or stream.codec_context.height < 1:
            raise VideoDecodeError(path, "video stream has no frame size (unreadable codec parameters)")
        yield container, stream


def read_video_header(path: str | os.PathLike) -> VideoHeader:
    """The header facts of ``path``; raises ``VideoDecodeError`` for files that are not a video at all.

    The first frame is decoded for its display rotation (PyAV states it nowhere else).
    """
    path = os.fspath(path)
    with _open_video_stream(path) as (container, stream):
        rate = stream.average_rate or stream.guessed_rate
        if not rate or rate <= 0:
            raise VideoDecodeError(path, "the container states no frame rate")
        fps = float(rate)
        num_frames = stream.frames
        if num_frames <= 0:
            end = _stated_end(stream)
            num_frames = round(end * fps) if end else 0
        if num_frames <= 0:
            raise VideoDecodeError(path, "the container states no frames (empty or truncated)")
        try:
            rotation = _rotation_of(container.decode(stream))
        except av.FFmpegError as err:
            raise VideoDecodeError(path, f"the first frame cannot be decoded ({err})") from err
        height, width = _displayed(stream.codec_context.height, stream.codec_context.width, rotation)
        return VideoHeader(path, num_frames, fps, height, width)


def probe_video(path: str | os.PathLike) -> VideoProbe:
    """Open ``path`` with PyAV, demux its video packets and check they are complete; raise on any defect."""
    path = os.fspath(path)
    with _open_video_stream(path) as (container, stream):
        pts, durations, keyframe, first_frames = [], [], [], []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker, not a frame
                    continue
                if packet.pts is None:
                    raise VideoDecodeError(path, f"video packet {len(pts)} has no presentation timestamp")
                if not first_frames:  # decode until the first frame comes out: it carries the rotation
                    first_frames = stream.codec_context.decode(packet)
                pts.append(packet.pts)
                durations.append(packet.duration or 0)
                keyframe.append(packet.is_keyframe)
            if pts and not first_frames:
                first_frames = stream.codec_context.decode(None)
        except av.FFmpegError as err:
            raise VideoDecodeError(path, f"container is damaged after {len(pts)} frames ({err})") from err
        declared = stream.frames
        if not pts:
            detail = f" although the container declares {declared}" if declared > 0 else ""
            raise VideoDecodeError(path, f"video stream has zero frames{detail} (truncated or empty)")
        if declared > 0 and declared != len(pts):
            raise VideoDecodeError(
                path,
                f"container declares {declared} frames but {len(pts)} are present (truncated or damaged file)",
            )
        frame_pts = np.asarray(pts, dtype=np.int64)
        order = np.argsort(frame_pts, kind="stable")
        frame_pts = frame_pts[order]
        if np.any(np.diff(frame_pts) == 0):
            raise VideoDecodeError(path, "several frames share one presentation timestamp")
        keyframe_pts = frame_pts[np.asarray(keyframe, dtype=bool)[order]]
        time_base = stream.time_base
        fps = _stream_fps(stream, frame_pts, time_base)
        last_duration = float(durations[order[-1]] * time_base) or 1.0 / fps
        if declared <= 0:  # no frame count to check (e.g. Matroska/WebM): check the stated duration instead
            _check_duration(path, stream, float(frame_pts[-1] * time_base) + last_duration, fps)
        rotation = _rotation_of(iter(first_frames))
        height, width = _displayed(stream.codec_context.height, stream.codec_context.width, rotation)
        return VideoProbe(
            path=path,
            stream_index=stream.index,
            num_frames=len(frame_pts),
            fps=fps,
            height=height,
            width=width,
            time_base=time_base,
            frame_pts=frame_pts,
            keyframe_pts=keyframe_pts,
            duration=float((frame_pts[-1] - frame_pts[0]) * time_base) + last_duration,
            rotation=rotation,
        )


def resize_rgb(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize one (H, W, 3) uint8 frame with bicubic filtering (antialiased when shrinking)."""
    frame = np.ascontiguousarray(frame)  # a turned (rotated) frame is a strided view
    if frame.shape[:2] == (height, width):
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC))


def decode_with_decord(probe: VideoProbe, indices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Decode the frames at sorted unique ``indices`` with decord; (len(indices), height, width, 3) uint8."""
    import decord

    try:
        reader = decord.VideoReader(probe.path, num_threads=1)
    except (decord.DECORDError, RuntimeError) as err:
        raise VideoDecodeError(probe.path, f"decord cannot open the file ({err})") from err
    if len(reader) != probe.num_frames:
        raise DecoderDisagreesError(
            probe.path, f"decord counts {len(reader)} frames but the container holds {probe.num_frames}"
        )
    try:
        times = reader.get_frame_timestamp(np.asarray([0, *indices]))[:, 0]
    except (decord.DECORDError, RuntimeError) as err:
        raise VideoDecodeError(probe.path, f"decord cannot read the frame timestamps ({err})") from err
    expected = probe.frame_times[indices]
    if np.max(np.abs((times[1:] - times[0]) - expected)) > 0.5 / probe.fps:
        raise DecoderDisagreesError(probe.path, "decord's frame timestamps differ from the container's")
    out = np.empty((len(indices), height, width, 3), dtype=np.uint8)
    for start in range(0, len(indices), _DECORD_CHUNK):
        chunk = indices[start : start + _DECORD_CHUNK]
        try:
            batch = reader.get_batch(chunk.tolist())
        except (decord.DECORDError, RuntimeError) as err:
            raise VideoDecodeError(
                probe.path, f"decord failed on frames {chunk[0]}..{chunk[-1]} ({err})"
            ) from err
        # decord returns its own array type unless a global bridge (e.g. torch) was set by the caller
        batch = np.asarray(batch.asnumpy() if hasattr(batch, "asnumpy") else batch)
        if batch.shape[0] != len(chunk):
            raise VideoDecodeError(probe.path, f"decord returned {batch.shape[0]} frames for {len(chunk)}")
        if batch.shape[1:3] != (probe.height, probe.width):
            raise DecoderDisagreesError(
                probe.path, f"decord returns {batch.shape[1]}x{batch.shape[2]} frames but the video displays "
                f"{probe.height}x{probe.width} (rotation {probe.rotation})"
            )
        for offset, frame in enumerate(batch):
            out[start + offset] = resize_rgb(frame, height, width)
    return out


def decode_with_pyav(probe: VideoProbe, indices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Decode the frames at sorted unique ``indices`` with PyAV; (len(indices), height, width, 3) uint8.

    Frames are matched by presentation timestamp and turned upright by the display rotation, as decord
    and players show them. The decoder seeks to the keyframe before a wanted frame
    when that keyframe lies ahead of the current position, so sparse sampling of a long video does not
    decode every frame.
    """
    out = np.empty((len(indices), height, width, 3), dtype=np.uint8)
    try:
        with av.open(probe.path) as container:
            stream = container.streams[probe.stream_index]
            frames = None
            position = None  # pts of the last decoded frame
            for slot, index in enumerate(indices):
                target = int(probe.frame_pts[index])
                key = _keyframe_before(probe, target)
                if frames is None or position >= target or key > position:
                    container.seek(key, stream=stream, backward=True, any_frame=False)
                    frames = container.decode(stream)
                frame, position = _advance_to(frames, target, probe, index)
                upright = np.rot90(frame.to_ndarray(format="rgb24"), probe.rotation // 90)
                out[slot] = resize_rgb(upright, height, width)
    except av.FFmpegError as err:
        raise VideoDecodeError(probe.path, f"PyAV failed while decoding ({err})") from err
    return out


def _keyframe_before(probe: VideoProbe, target: int) -> int:
    at = int(np.searchsorted(probe.keyframe_pts, target, side="right")) - 1
    return int(probe.keyframe_pts[at]) if at >= 0 else int(probe.frame_pts[0])


def _advance_to(frames, target: int, probe: VideoProbe, index: int) -> tuple[av.VideoFrame, int]:
    for frame in frames:
        if frame.pts is None:
            raise VideoDecodeError(probe.path, "decoder produced a frame without a timestamp")
        if frame.pts == target:
            return frame, frame.pts
        if frame.pts > target:
            raise VideoDecodeError(probe.path, f"frame {index} could not be decoded (decoder skipped it)")
    raise VideoDecodeError(probe.path, f"stream ended before frame {index} of {probe.num_frames}")


def decord_available() -> bool:
    """Whether decord can be imported here (it has no wheels for some platforms, e.g. aarch64)."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


DECODERS: dict[str, Callable[[VideoProbe, np.ndarray, int, int], np.ndarray]] = {
    "decord": decode_with_decord,
    "pyav": decode_with_pyav,
}
