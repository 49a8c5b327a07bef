"""Small videos generated on the spot: frame-numbered clips, broken files, and a tiny synthetic dataset."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from longrl.data.synthetic import generate_dataset
from longrl.data.synthetic_scenes import write_mp4
from index_frames import index_frame

def write_indexed_video(path: Path, num_frames: int, fps: float, faststart: bool = True) -> Path:
    """An mp4 (or, for a ``.mkv`` path, a Matroska file, which states no frame count) of index frames."""
    frames = (index_frame(i) for i in range(num_frames))
    if path.suffix != ".mkv":
        write_mp4(path, frames, fps, faststart=faststart)
        return path
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = 112, 112, "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def indexed_video(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``indexed_video(num_frames, fps, suffix=".mp4")``: a video whose frame i shows i in binary (cached)."""
    made: dict[tuple[int, float, str], Path] = {}

    def get(num_frames: int, fps: float, suffix: str = ".mp4") -> Path:
        key = (num_frames, fps, suffix)
        if key not in made:
            path = tmp_path_factory.mktemp("indexed") / f"indexed_{num_frames}f_{fps}fps{suffix}"
            made[key] = write_indexed_video(path, num_frames, fps)
        return made[key]

    return get


def _audio_only_mp4(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _zero_frame_avi(path: Path) -> None:
    """An AVI with a declared mpeg4 video stream and no frames (mp4 muxers drop empty streams)."""
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=2)
    stream.width, stream.height, stream.pix_fmt = 112, 112, "yuv420p"
    container.start_encoding()
    container.close()


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Broken inputs by case name; every one must raise VideoDecodeError naming the file."""
    root = tmp_path_factory.mktemp("bad")
    good_faststart = write_indexed_video(root / "good_faststart.mp4", 60, 4.0)
    good_index_last = write_indexed_video(root / "good_index_last.mp4", 60, 4.0, faststart=False)
    cases: dict[str, Path] = {"missing": root / "missing.mp4", "directory": root}

    def write(name: str, data: bytes) -> None:
        cases[name] = root / name
        cases[name].write_bytes(data)

    write("empty.mp4", b"")
    write("garbage.mp4", np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    faststart_bytes, index_last_bytes = good_faststart.read_bytes(), good_index_last.read_bytes()
    # index first: the container still lists all 60 frames but most of their data is gone
    write("truncated40_faststart.mp4", faststart_bytes[: len(faststart_bytes) * 4 // 10])
    write("truncated90_faststart.mp4", faststart_bytes[: len(faststart_bytes) * 9 // 10])
    # index last: the index itself is cut off
    write("truncated40_index_last.mp4", index_last_bytes[: len(index_last_bytes) * 4 // 10])
    # Matroska states no frame count, only where the stream ends
    mkv_bytes = write_indexed_video(root / "good.mkv", 60, 4.0).read_bytes()
    write("truncated60.mkv", mkv_bytes[: len(mkv_bytes) * 6 // 10])
    # the index and no frame data at all
    mdat = faststart_bytes.index(b"mdat")
    write("index_only.mp4", faststart_bytes[: mdat + 4])
    # the codec tag rewritten to one no decoder knows
    tag = faststart_bytes.index(b"avc1", 40)
    write("unknown_codec.mp4", faststart_bytes[:tag] + b"zzzz" + faststart_bytes[tag + 4 :])
    cases["audio_only.mp4"] = root / "audio_only.mp4"
    _audio_only_mp4(cases["audio_only.mp4"])
    cases["zero_frames.avi"] = root / "zero_frames.avi"
    _zero_frame_avi(cases["zero_frames.avi"])
    return cases


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A 6-video synthetic dataset (seed 5, 48 frames, 112 px, 2 fps) shared by the synthetic tests."""
    root = tmp_path_factory.mktemp("synthetic")
    return root, generate_dataset(root, num=6, frames=48, seed=5, size=112, fps=2.0)


def quadrant_image(height: int = 56, width: int = 112) -> np.ndarray:
    """Four coloured quadrants (red, green / blue, white): which way up a decoded frame is can be read off it."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[: height // 2, : width // 2] = (255, 0, 0)
    image[: height // 2, width // 2 :] = (0, 255, 0)
    image[height // 2 :, : width // 2] = (0, 0, 255)
    image[height // 2 :, width // 2 :] = (255, 255, 255)
    return image


def _encode(path: Path, frames: list[np.ndarray], pts_ms: list[int], rotation: int = 0, pix_fmt: str = "yuv420p"):
    """An H.264 mp4 of ``frames`` shown from ``pts_ms`` (milliseconds), with a display rotation when not 0."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"bf": "0", "crf": "18", "threads": "1"}
        if rotation:
            stream.set_display_rotation(rotation)
        for image, pts in zip(frames, pts_ms):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def rotated_video(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], tuple[Path, np.ndarray]]:
    """``rotated_video(angle)``: an mp4 of 4 :func:`quadrant_image` frames stored with a display rotation of ``angle``
    degrees, and the stored (unturned) image."""
    root = tmp_path_factory.mktemp("rotated")
    image = quadrant_image()
    return lambda angle: (_encode(root / f"rot{angle}.mp4", [image] * 4, [0, 100, 200, 300], angle), image)


@pytest.fixture(scope="session")
def vfr_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """A variable-frame-rate mp4 and its frame start times: bursts at 10 fps with gaps of 1.5 s and 1.9 s, ending
    at 4.3 s; frame k shows k (index frames)."""
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 2.1, 4.0, 4.1, 4.2]
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    return _encode(path, [index_frame(k) for k in range(len(times))], [round(t * 1000) for t in times]), times


@pytest.fixture(scope="session")
def one_pixel_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 1x1 video (4 grey frames, 0/60/120/180): PyAV decodes it, decord fails on it."""
    frames = [np.full((1, 1, 3), 60 * k, dtype=np.uint8) for k in range(4)]
    return _encode(tmp_path_factory.mktemp("one_pixel") / "one_pixel.mp4", frames, [0, 250, 500, 750],
                   pix_fmt="yuv444p")
