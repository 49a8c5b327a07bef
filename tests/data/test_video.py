"""Frame sampling, pixel budgets and decoding (decord and PyAV) of generated videos, and bad-input errors.

The decoding tests use videos whose frame i shows i in binary (tests/index_frames.py), so which frames came
back is read from the decoded pixels, independently of the decoder's own bookkeeping.
"""

from __future__ import annotations

import numpy as np
import pytest
from index_frames import read_index

from longrl.data import decoders, video
from longrl.data.video import (
    DecodedVideo,
    FrameSampling,
    VideoDecodeError,
    constant_rate_times,
    fit_under_pixels,
    load_video,
    probe_video,
    sample_frame_indices,
)

BACKENDS = ["decord", "pyav"]


def read_indices(frames: np.ndarray) -> list[int]:
    """Frame numbers shown by decoded index frames (``index_frames``), at any frame width."""
    return [read_index(frame) for frame in frames]


# ---------------------------------------------------------------- sampling (hand-computed indices)


@pytest.mark.parametrize(
    "total, fps, sampling, expected",
    [
        # 5 of 100: positions 0, 24.75, 49.5, 74.25, 99 rounded half up
        (100, 30.0, FrameSampling(num_frames=5), [0, 25, 50, 74, 99]),
        (100, 30.0, FrameSampling(num_frames=1), [0]),
        # more frames than the video has: positions k * 3 / 7 rounded, frames repeat
        (4, 2.0, FrameSampling(num_frames=8), [0, 0, 1, 1, 2, 2, 3, 3]),
        # 1 fps of a 2 fps video: every second frame
        (20, 2.0, FrameSampling(fps=1.0), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]),
        # 21 frames = 10.5 s: the sample at 10 s (frame 20) is inside the video
        (21, 2.0, FrameSampling(fps=1.0), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]),
        (100, 30.0, FrameSampling(fps=2.5), [0, 12, 24, 36, 48, 60, 72, 84, 96]),
        # step 2 / 0.7 = 2.857 frames: floor(k * 2.857) for k < 7 (k = 7 is t = 10 s, the video's end)
        (20, 2.0, FrameSampling(fps=0.7), [0, 2, 5, 8, 11, 14, 17]),
        # a rate above the source rate keeps every frame once
        (5, 2.0, FrameSampling(fps=10.0), [0, 1, 2, 3, 4]),
        # the cap bites: 1000 samples wanted, 4 spread over the whole video (0, 333, 666, 999)
        (1000, 2.0, FrameSampling(fps=2.0, max_frames=4), [0, 333, 666, 999]),
        # exactly at the cap: not resampled
        (8, 2.0, FrameSampling(fps=2.0, max_frames=8), [0, 1, 2, 3, 4, 5, 6, 7]),
    ],
)
def test_sample_frame_indices_exact(total, fps, sampling, expected):
    indices = sample_frame_indices(*constant_rate_times(total, fps), sampling)
    assert indices.dtype == np.int64
    assert indices.tolist() == expected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of num_frames / fps"),
        ({"num_frames": 4, "fps": 2.0}, "exactly one of num_frames / fps"),
        ({"num_frames": 0}, "num_frames must be >= 1"),
        ({"fps": 0.0}, "fps must be > 0"),
        ({"fps": 1.0, "max_frames": 0}, "max_frames must be >= 1"),
    ],
)
def test_frame_sampling_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FrameSampling(**kwargs)


def test_sample_frame_indices_rejects_empty_video():
    with pytest.raises(ValueError, match="at least one frame"):
        sample_frame_indices(np.zeros(0), 1.0, FrameSampling(num_frames=2))
    with pytest.raises(ValueError, match="duration must be > 0"):
        sample_frame_indices(np.zeros(1), 0.0, FrameSampling(num_frames=2))
    with pytest.raises(ValueError, match="fps must be > 0"):
        constant_rate_times(10, 0.0)


# Frame k starts at VFR_TIMES[k] seconds (the vfr_video fixture): 10 fps bursts with gaps of 1.5 s and 1.9 s.
VFR_TIMES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 2.1, 4.0, 4.1, 4.2]
VFR_PICKS = [
        # instants 0, 1, 2, 3, 4 s: on screen are frames 0, 5 (shown 0.5-2.0 s), 6, 7 (2.1-4.0 s), 8
        (FrameSampling(fps=1.0), [0, 5, 6, 7, 8]),
        # instants 0, 1.4, 2.8, 4.2 s: the frames starting nearest to them (2.0 s is nearer 1.4 s than 0.5 s)
        (FrameSampling(num_frames=4), [0, 6, 7, 10]),
        # instants every 0.25 s: 0.25 s shows frame 2, 0.5-1.75 s frame 5 (kept once), 4.25 s frame 10
        (FrameSampling(fps=4.0), [0, 2, 5, 6, 7, 8, 10]),
]


@pytest.mark.parametrize("sampling, expected", VFR_PICKS)
def test_sample_frame_indices_by_presentation_time(sampling, expected):
    """A variable frame rate: frame-index spacing would pick frames 0, 3, 7, 10 for four samples."""
    assert sample_frame_indices(np.asarray(VFR_TIMES), 4.3, sampling).tolist() == expected


# ---------------------------------------------------------------- pixel budget


@pytest.mark.parametrize(
    "size, max_pixels, min_pixels, expected",
    [
        ((112, 112), None, None, (112, 112)),
        ((100, 100), None, None, (112, 112)),  # 100 / 28 = 3.57 -> 4 patches
        ((42, 70), None, None, (56, 84)),  # 1.5 -> 2 and 2.5 -> 3 patches: halves round up
        # 1080p under 448 * 448: scale sqrt(200704 / 2073600) -> 336 x 597.3 -> 336 x 588 (197568 px)
        ((1080, 1920), 448 * 448, None, (336, 588)),
        ((28, 28), None, 112 * 112, (112, 112)),  # scaled up 4x to reach min_pixels
        # 10 x 5000 under 20 patches: the short side stays one patch, the long side gets the other 20
        ((10, 5000), 28 * 28 * 20, None, (28, 560)),
        ((224, 448), 224 * 448, 224 * 448, (224, 448)),  # both bounds met exactly
        ((32, 32), None, None, (32, 32)),  # factor 16 below
    ],
)
def test_fit_under_pixels_examples(size, max_pixels, min_pixels, expected):
    factor = 16 if size == (32, 32) else 28
    assert fit_under_pixels(*size, max_pixels, min_pixels, factor) == expected


def test_fit_under_pixels_respects_bounds_on_random_sizes():
    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(8, 4000, size=2))
        max_pixels = int(rng.integers(28 * 28 * 16, 1280 * 28 * 28))
        min_pixels = int(rng.integers(28 * 28, max_pixels // 8))
        out_h, out_w = fit_under_pixels(height, width, max_pixels, min_pixels)
        assert out_h % 28 == 0 and out_w % 28 == 0
        assert out_h * out_w <= max_pixels
        if max(height, width) / min(height, width) < 8:  # not clamped by a one-patch side
            assert out_h * out_w >= min_pixels
        if min(out_h, out_w) >= 4 * 28:  # rounding moves each side by under one patch in four
            assert abs(np.log((out_h / out_w) / (height / width))) < np.log(5 / 4)


def test_fit_under_pixels_rejects_impossible_bounds():
    with pytest.raises(ValueError, match="below one 28x28 patch"):
        fit_under_pixels(100, 100, 500, None)
    with pytest.raises(ValueError, match="exceeds max_pixels"):
        fit_under_pixels(100, 100, 10_000, 20_000)


# ---------------------------------------------------------------- decoding generated videos


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "sampling, expected",
    [
        (FrameSampling(fps=1.0), [0, 4, 8, 12, 16, 20, 24, 28]),  # 30 frames at 4 fps
        (FrameSampling(num_frames=7), [0, 5, 10, 15, 19, 24, 29]),  # positions k * 29 / 6
        (FrameSampling(fps=4.0, max_frames=5), [0, 7, 15, 22, 29]),  # cap: positions k * 29 / 4
        (FrameSampling(num_frames=32), [round(k * 29 / 31 + 1e-9) for k in range(32)]),  # repeats
    ],
)
def test_load_video_returns_the_sampled_frames(indexed_video, backend, sampling, expected):
    path = indexed_video(30, 4.0)
    decoded = load_video(path, sampling, backend=backend)
    assert isinstance(decoded, DecodedVideo)
    assert decoded.path == str(path)
    assert decoded.frames.shape == (len(expected), 112, 112, 3) and decoded.frames.dtype == np.uint8
    assert read_indices(decoded.frames) == expected
    np.testing.assert_allclose(decoded.timestamps, np.asarray(expected) / 4.0, atol=1e-6)
    assert decoded.timestamps.dtype == np.float64
    assert decoded.source_fps == 4.0 and decoded.source_num_frames == 30
    assert decoded.sampled_fps == pytest.approx(len(expected) / 7.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_video_seeks_across_keyframes(indexed_video, backend):
    """200 frames with a keyframe every 32: sparse picks and a dense run after a far jump."""
    path = indexed_video(200, 8.0)
    probe = probe_video(path)
    assert probe.num_frames == 200 and len(probe.keyframe_pts) >= 6
    decoded = load_video(path, FrameSampling(num_frames=9), backend=backend)
    assert read_indices(decoded.frames) == [0, 25, 50, 75, 100, 124, 149, 174, 199]
    every = load_video(path, FrameSampling(fps=8.0), backend=backend)
    assert read_indices(every.frames) == list(range(200))


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_video_reads_matroska_without_a_frame_count(indexed_video, backend):
    path = indexed_video(30, 4.0, ".mkv")
    decoded = load_video(path, FrameSampling(num_frames=7), backend=backend)
    assert read_indices(decoded.frames) == [0, 5, 10, 15, 19, 24, 29]
    assert decoded.source_num_frames == 30 and decoded.source_fps == 4.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_video_resizes_under_max_pixels(indexed_video, backend):
    decoded = load_video(indexed_video(30, 4.0), FrameSampling(num_frames=4), max_pixels=56 * 56, backend=backend)
    assert decoded.frames.shape == (4, 56, 56, 3)
    assert read_indices(decoded.frames) == [0, 10, 19, 29]
    grown = load_video(indexed_video(30, 4.0), FrameSampling(num_frames=2), min_pixels=224 * 224, backend=backend)
    assert grown.frames.shape == (2, 224, 224, 3)
    assert read_indices(grown.frames) == [0, 29]


def test_backends_decode_identical_frames(indexed_video):
    path = indexed_video(30, 4.0)
    by_decord = load_video(path, FrameSampling(num_frames=6), backend="decord")
    by_pyav = load_video(path, FrameSampling(num_frames=6), backend="pyav")
    assert np.abs(by_decord.frames.astype(int) - by_pyav.frames.astype(int)).max() <= 2
    np.testing.assert_array_equal(by_decord.timestamps, by_pyav.timestamps)


def test_auto_backend_uses_pyav_without_decord(indexed_video, monkeypatch):
    def no_decord(*args, **kwargs):
        raise AssertionError("decord must not be called when it is not importable")

    monkeypatch.setattr(video, "decord_available", lambda: False)
    monkeypatch.setitem(decoders.DECODERS, "decord", no_decord)
    decoded = load_video(indexed_video(30, 4.0), FrameSampling(num_frames=3))
    assert read_indices(decoded.frames) == [0, 15, 29]
    with pytest.raises(ImportError, match="decord is not installed"):
        load_video(indexed_video(30, 4.0), FrameSampling(num_frames=3), backend="decord")


def test_auto_backend_falls_back_when_decord_disagrees(indexed_video, monkeypatch, caplog):
    path = indexed_video(30, 4.0)

    def disagreeing(probe, *args):
        raise decoders.DecoderDisagreesError(probe.path, "decord counts 31 frames but the container holds 30")

    monkeypatch.setattr(video, "decord_available", lambda: True)
    monkeypatch.setitem(decoders.DECODERS, "decord", disagreeing)
    decoded = load_video(path, FrameSampling(num_frames=3), backend="auto")
    assert read_indices(decoded.frames) == [0, 15, 29]
    assert "decoded it with PyAV instead" in caplog.text
    with pytest.raises(VideoDecodeError, match="decord counts 31 frames"):
        load_video(path, FrameSampling(num_frames=3), backend="decord")


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_video_samples_a_variable_frame_rate_file_by_time(vfr_video, backend):
    path, times = vfr_video
    assert times == VFR_TIMES
    probe = probe_video(path)
    np.testing.assert_allclose(probe.frame_times, VFR_TIMES, atol=1e-6)
    assert probe.duration == pytest.approx(4.3, abs=1e-3)
    for sampling, expected in VFR_PICKS:
        decoded = load_video(path, sampling, backend=backend)
        assert read_indices(decoded.frames) == expected
        np.testing.assert_allclose(decoded.timestamps, np.asarray(VFR_TIMES)[expected], atol=1e-6)
        assert decoded.sampled_fps == pytest.approx(len(expected) / 4.3, rel=1e-3)


@pytest.mark.parametrize("angle, turns", [(90, 1), (180, 2), (-90, 3)])
def test_both_backends_turn_rotated_video_upright(rotated_video, angle, turns):
    """A 56x112 frame stored with a display rotation comes back as a player shows it, from either decoder."""
    from longrl.data.decoders import read_video_header

    path, stored = rotated_video(angle)
    upright = np.rot90(stored, turns)  # the display matrix turns counterclockwise
    header, probe = read_video_header(path), probe_video(path)
    assert (header.height, header.width) == (probe.height, probe.width) == upright.shape[:2]
    assert probe.rotation == 90 * turns
    by_backend = {backend: load_video(path, FrameSampling(num_frames=2), backend=backend).frames
                  for backend in BACKENDS}
    for frames in by_backend.values():
        assert frames.shape == (2, *upright.shape)
        # colour edges blur under 4:2:0 chroma; the mean error over the frame stays small
        assert np.abs(frames.astype(int) - upright.astype(int)).mean() < 6
    assert np.abs(by_backend["decord"].astype(int) - by_backend["pyav"].astype(int)).max() <= 2


def test_auto_backend_retries_a_file_decord_fails_on_with_pyav(one_pixel_video, caplog):
    """decord fails on a valid 1x1 video (an internal size check); PyAV reads it, and the switch is logged once."""
    with pytest.raises(VideoDecodeError, match="decord failed on frames"):
        load_video(one_pixel_video, FrameSampling(num_frames=4), backend="decord")
    with caplog.at_level("WARNING", logger="longrl.data.video"):
        for _ in range(2):
            decoded = load_video(one_pixel_video, FrameSampling(num_frames=4), backend="auto")
            np.testing.assert_allclose(decoded.frames.mean(axis=(1, 2, 3)), [0, 60, 120, 180], atol=3)
    assert caplog.text.count("decoded it with PyAV instead") == 1


def test_unknown_backend_is_rejected(indexed_video):
    with pytest.raises(ValueError, match="backend must be one of"):
        load_video(indexed_video(30, 4.0), FrameSampling(num_frames=3), backend="opencv")


# ---------------------------------------------------------------- bad inputs


BAD_CASES = {
    "missing": "does not exist",
    "directory": "not a regular file",
    "empty.mp4": "empty",
    "garbage.mp4": "not a readable media container",
    "truncated40_faststart.mp4": "truncated",
    "truncated90_faststart.mp4": "truncated",
    "truncated40_index_last.mp4": "not a readable media container",
    "truncated60.mkv": "container says the video runs to 15.00s",
    "index_only.mp4": "zero frames",
    "unknown_codec.mp4": "no decoder",
    "audio_only.mp4": "no video stream",
    "zero_frames.avi": "zero frames",
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_raises_video_decode_error(bad_videos, case, backend):
    path = bad_videos[case]
    with pytest.raises(VideoDecodeError) as caught:
        load_video(path, FrameSampling(num_frames=4), backend=backend)
    assert str(path) in str(caught.value)
    assert BAD_CASES[case] in str(caught.value)
    assert caught.value.path == str(path)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_decord_never_sees_a_bad_file(bad_videos, case, monkeypatch):
    """The PyAV probe rejects every bad case first (decord can hang on some of them, see decoders.py)."""

    def decord_called(*args):
        raise AssertionError("decord was handed a file the probe should have rejected")

    monkeypatch.setitem(decoders.DECODERS, "decord", decord_called)
    with pytest.raises(VideoDecodeError):
        load_video(bad_videos[case], FrameSampling(num_frames=4), backend="decord")


def test_truncated_file_is_rejected_by_the_probe(bad_videos):
    """The cut-off faststart file still declares 60 frames; the probe counts the ones really present."""
    with pytest.raises(VideoDecodeError, match=r"declares 60 frames but \d+ are present"):
        probe_video(bad_videos["truncated90_faststart.mp4"])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_header_states_what_the_full_probe_verifies(indexed_video, suffix):
    from longrl.data.decoders import probe_video, read_video_header

    path = indexed_video(37, 4.0, suffix)
    header, probe = read_video_header(path), probe_video(path)
    assert (header.num_frames, header.fps, header.height, header.width) == (37, 4.0, probe.height, probe.width)
    assert probe.num_frames == 37


@pytest.mark.parametrize("case", ["missing", "empty.mp4", "garbage.mp4", "audio_only.mp4", "unknown_codec.mp4"])
def test_header_rejects_files_that_are_not_videos(bad_videos, case):
    from longrl.data.decoders import read_video_header

    with pytest.raises(VideoDecodeError) as info:
        read_video_header(bad_videos[case])
    assert str(bad_videos[case]) in str(info.value)
