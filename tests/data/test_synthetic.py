"""Synthetic long-video tasks: files and rows, determinism, and the answers recovered from decoded pixels.

The pixel readers below know only the layout (where cups rest, which colours exist); they rebuild the
ball's path, the flash count and the flash order from the decoded frames and compare with the rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from longrl.data.synthetic import (
    ANNOTATOR_CLOSE_MARGIN,
    BALL_COLOUR,
    CUP_COLOUR,
    HOME_Y,
    LETTERS,
    MAJORITY_COLOURS,
    MARK_COLOUR,
    SLOT_NAMES,
    SLOT_X,
    TASKS,
    annotated_row,
    generate_dataset,
    make_sample,
    split_indices,
)
from longrl.data.synthetic_scenes import BACKGROUND, PALETTE, render_scene
from longrl.data.video import FrameSampling, load_video

BACKENDS = ["decord", "pyav"]
COLOUR_NAMES = [*PALETTE, "background"]
COLOUR_VALUES = np.array([*PALETTE.values(), BACKGROUND], dtype=np.float64)
MIN_SHAPE_PIXELS = 300  # the smallest flash (a triangle of half side 0.2 at 112 px) covers ~1000


def rows_of(paths: dict[str, Path]) -> dict[str, list[dict]]:
    return {split: [json.loads(line) for line in path.read_text().splitlines()] for split, path in paths.items()}


def all_rows(paths: dict[str, Path]) -> list[dict]:
    return [row for rows in rows_of(paths).values() for row in rows]


def decode_all(root: Path, row: dict, backend: str) -> np.ndarray:
    return load_video(root / row["video"], FrameSampling(fps=row["meta"]["fps"]), backend=backend).frames


def colour_labels(frame: np.ndarray) -> np.ndarray:
    """Index into COLOUR_NAMES of the nearest palette colour, per pixel."""
    distances = ((frame[:, :, None, :].astype(np.float64) - COLOUR_VALUES) ** 2).sum(axis=-1)
    return distances.argmin(axis=-1)


def box_colour(frame: np.ndarray, cy: float, cx: float, half: float = 0.04) -> str:
    size = frame.shape[0]
    rows = slice(round((cy - half) * size), round((cy + half) * size))
    cols = slice(round((cx - half) * size), round((cx + half) * size))
    return COLOUR_NAMES[Counter(colour_labels(frame[rows, cols]).ravel().tolist()).most_common(1)[0][0]]


def read_shell_game(frames: np.ndarray) -> tuple[int, list[tuple[int, int, list[int]]]]:
    """(slot shown in the reveal frames, [(first frame, last frame, swapped slots)]) from pixels alone."""
    ball_label = COLOUR_NAMES.index(BALL_COLOUR)
    revealed, states = set(), []
    for frame in frames:
        ball = colour_labels(frame) == ball_label
        if ball.sum() > 50:
            x = np.nonzero(ball)[1].mean() / frame.shape[1]
            revealed.add(int(np.argmin([abs(x - slot_x) for slot_x in SLOT_X])))
            states.append(None)
            continue
        away = [slot for slot, x in enumerate(SLOT_X) if box_colour(frame, HOME_Y, x) != CUP_COLOUR]
        assert len(away) in (0, 2), f"one cup moves alone: {away}"
        states.append(away or None)
    assert len(revealed) == 1
    swaps = []
    for index, state in enumerate(states):
        if state is None:
            continue
        if swaps and swaps[-1][1] == index - 1:
            assert swaps[-1][2] == state, "the moving pair changed without a rest frame"
            swaps[-1] = (swaps[-1][0], index, state)
        else:
            swaps.append((index, index, state))
    return revealed.pop(), swaps


def read_flashes(frames: np.ndarray) -> list[tuple[int, str, str]]:
    """(frame, colour, shape) of every flashed shape; shape from how much of its bounding box it fills."""
    flashes = []
    background = COLOUR_NAMES.index("background")
    for index, frame in enumerate(frames):
        labels = colour_labels(frame)
        counts = np.bincount(labels.ravel(), minlength=len(COLOUR_NAMES))
        counts[background] = 0
        if counts.max() < MIN_SHAPE_PIXELS:
            continue
        colour = int(counts.argmax())
        ys, xs = np.nonzero(labels == colour)
        fill = len(ys) / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
        shape = "square" if fill > 0.9 else "circle" if fill > 0.65 else "triangle"  # 1, pi/4, 1/2
        flashes.append((index, COLOUR_NAMES[colour], shape))
    return flashes


def answer_text(row: dict) -> str:
    return row["options"][LETTERS.index(row["answer"])]


# ---------------------------------------------------------------- files and rows


def test_dataset_files_and_rows(synthetic_dir):
    root, paths = synthetic_dir
    assert list(paths) == ["train", "val", "test"]
    assert paths == {split: root / f"{split}.jsonl" for split in ("train", "val", "test")}
    rows = rows_of(paths)
    assert [len(rows[s]) for s in ("train", "val", "test")] == [4, 1, 1]
    ids = [row["id"] for row in all_rows(paths)]
    assert len(set(ids)) == 6
    assert Counter(row["task"] for row in all_rows(paths)) == {task: 2 for task in TASKS}
    for row in all_rows(paths):
        assert set(row) == {"id", "video", "question", "options", "answer", "reasoning", "task", "meta"}
        assert row["video"] == f"videos/{row['id']}.mp4" and (root / row["video"]).is_file()
        assert len(set(row["options"])) == len(row["options"]) >= 3
        assert not any(option[:2] in {f"{letter}." for letter in LETTERS} for option in row["options"])
        assert answer_text(row) == row["meta"]["answer_text"]
        assert row["meta"]["num_frames"] == 48 and row["meta"]["fps"] == 2.0


def test_split_indices_cover_everything_once():
    for num in (3, 4, 10, 57):
        splits = split_indices(num, seed=1)
        assert all(splits[s] for s in ("train", "val", "test"))
        assert sorted(i for s in splits.values() for i in s) == list(range(num))
    splits = split_indices(100, seed=1)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [80, 10, 10]
    with pytest.raises(ValueError, match="at least 3 samples"):
        split_indices(2)


def test_same_seed_gives_identical_rows_and_videos(synthetic_dir, tmp_path):
    root, paths = synthetic_dir
    again = generate_dataset(tmp_path / "again", num=6, frames=48, seed=5, size=112, fps=2.0)
    for split in paths:
        assert again[split].read_bytes() == paths[split].read_bytes()
    for row in all_rows(paths):
        assert (tmp_path / "again" / row["video"]).read_bytes() == (root / row["video"]).read_bytes()
        np.testing.assert_array_equal(
            decode_all(tmp_path / "again", row, "decord"), decode_all(root, row, "decord")
        )
    other = [make_sample(i, 48, seed=6).row for i in range(6)]
    assert other != [make_sample(i, 48, seed=5).row for i in range(6)]


# ---------------------------------------------------------------- decoded pixels


@pytest.mark.parametrize("backend", BACKENDS)
def test_decoded_videos_match_the_rendered_scenes(synthetic_dir, backend):
    root, paths = synthetic_dir
    for row in all_rows(paths):
        frames = decode_all(root, row, backend)
        assert frames.shape == (48, 112, 112, 3)
        index = int(row["id"].rsplit("_", 1)[1])
        rendered = np.stack(list(render_scene(make_sample(index, 48, seed=5).scene, 112)))
        error = np.abs(frames.astype(int) - rendered.astype(int))
        assert error.mean() < 3.0, f"{row['id']}: mean error {error.mean():.2f}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_shell_game_answer_recovered_from_pixels(synthetic_dir, backend):
    root, paths = synthetic_dir
    games = [row for row in all_rows(paths) if row["task"] == "shell_game"]
    assert games
    for row in games:
        meta = row["meta"]
        initial, swaps = read_shell_game(decode_all(root, row, backend))
        assert initial == meta["initial_slot"]
        assert swaps == [(s["start_frame"], s["end_frame"], s["slots"]) for s in meta["swaps"]]
        assert len(swaps) >= 8  # 48 frames hold many swaps
        ball = initial
        for _, _, (a, b) in swaps:
            ball = a + b - ball if ball in (a, b) else ball
        assert ball == meta["final_slot"] == meta["ball_slot_per_frame"][-1]
        assert answer_text(row) == SLOT_NAMES[ball]


@pytest.mark.parametrize("backend", BACKENDS)
def test_counting_answer_recovered_from_pixels(synthetic_dir, backend):
    root, paths = synthetic_dir
    rows = [row for row in all_rows(paths) if row["task"] == "counting"]
    assert rows
    for row in rows:
        meta = row["meta"]
        flashes = read_flashes(decode_all(root, row, backend))
        assert flashes == [(e["frame"], e["colour"], e["shape"]) for e in meta["events"]]
        target = [f for f, colour, _ in flashes if colour == meta["target_colour"]]
        assert target == meta["event_frames"]
        assert int(answer_text(row)) == len(target) == meta["count"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_temporal_order_answer_recovered_from_pixels(synthetic_dir, backend):
    root, paths = synthetic_dir
    rows = [row for row in all_rows(paths) if row["task"] == "temporal_order"]
    assert rows
    for row in rows:
        names = [f"{colour} {shape}" for _, colour, shape in read_flashes(decode_all(root, row, backend))]
        assert names == row["meta"]["order"]
        kind = row["meta"]["question_type"]
        expected = {"first": names[0], "last": names[-1], "order": ", ".join(names)}[kind]
        assert answer_text(row) == expected


# ---------------------------------------------------------------- rows without videos (fast, many)


@pytest.mark.parametrize("frames", [8, 9, 64, 300])
def test_ground_truth_is_consistent(frames):
    for index in range(30):
        sample = make_sample(index, frames, seed=3)
        row, meta = sample.row, sample.row["meta"]
        assert len(sample.scene) == frames
        if row["task"] == "shell_game":
            slots = meta["ball_slot_per_frame"]
            assert len(slots) == frames and slots[0] == meta["initial_slot"] and slots[-1] == meta["final_slot"]
            ends = [s["end_frame"] for s in meta["swaps"]]
            changes = [f for f in range(1, frames) if slots[f] != slots[f - 1]]
            assert set(changes) <= {end + 1 for end in ends}
            assert row["reasoning"].count("swap places") == len(meta["swaps"])
            assert row["reasoning"].endswith(f"the ball is under the {SLOT_NAMES[meta['final_slot']]} cup.")
        else:
            event_frames = [e["frame"] for e in meta["events"]]
            assert event_frames == sorted(event_frames) and min(np.diff(event_frames), default=2) >= 2
            assert 0 <= event_frames[0] and event_frames[-1] < frames
            if row["task"] == "counting":
                assert meta["count"] == sum(e["target"] for e in meta["events"]) >= 1
                assert f"flashes {meta['count']} time" in row["reasoning"]
            else:
                positions = [row["reasoning"].index(name) for name in meta["order"]]
                assert positions == sorted(positions)


def test_answer_letters_are_balanced():
    letters = {task: Counter() for task in TASKS}
    for index in range(600):
        row = make_sample(index, 24, seed=11).row
        letters[row["task"]][row["answer"]] += 1
    for task, counts in letters.items():
        # 200 rows per task over 3 or 4 options: each of A-C should hold roughly a quarter to a third
        assert all(counts[letter] >= 35 for letter in "ABC"), (task, counts)


def test_invalid_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="at least 8 frames"):
        make_sample(0, 7)
    with pytest.raises(ValueError, match="unknown synthetic task"):
        make_sample(0, 16, task="juggling")
    with pytest.raises(ValueError, match="even number of pixels"):
        generate_dataset(tmp_path, num=3, frames=8, size=111)
    with pytest.raises(ValueError, match="at least 3 samples"):
        generate_dataset(tmp_path, num=2, frames=8)


def test_cli_writes_the_three_splits(tmp_path):
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "longrl.data.synthetic", "--out", str(out), "--num", "3", "--frames", "8",
               "--seed", "2", "--size", "56", "--fps", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for split in ("train", "val", "test"):
        rows = [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
        assert len(rows) == 1
        assert f"{split}: 1 rows" in result.stdout
        decoded = load_video(out / rows[0]["video"], FrameSampling(fps=1.0))
        assert decoded.frames.shape == (8, 56, 56, 3) and decoded.source_fps == 1.0
    assert not (out / "train_annotated.jsonl").exists()  # only asked for with --annotated
    annotated = subprocess.run([*command, "--annotated", "--tasks", "majority_colour"], capture_output=True,
                               text=True, timeout=120)
    assert annotated.returncode == 0 and f"train_annotated: 1 rows -> {out / 'train_annotated.jsonl'}" in \
        annotated.stdout, annotated.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_majority_colour_answer_recovered_from_pixels(tmp_path, backend):
    paths = generate_dataset(tmp_path, num=6, frames=9, seed=4, tasks=("majority_colour",))
    rows = all_rows(paths)
    assert {row["task"] for row in rows} == {"majority_colour"}
    for row in rows:
        counts = Counter(colour for _, colour, _ in read_flashes(decode_all(tmp_path, row, backend)))
        assert dict(counts) == {colour: n for colour, n in row["meta"]["counts"].items() if n}
        (top, top_count), *rest = counts.most_common()
        assert all(n < top_count for _, n in rest), counts
        assert answer_text(row) == top
        assert row["reasoning"].endswith(f"So {top} flashes most often.")
        assert row["options"] == list(MAJORITY_COLOURS)


@pytest.mark.parametrize("frames", [8, 16, 64])
def test_majority_colour_has_a_strict_majority(frames):
    letters = Counter()
    for index in range(60):
        row = make_sample(index, frames, seed=5, task="majority_colour").row
        counts = sorted(row["meta"]["counts"].values(), reverse=True)
        assert counts[0] >= 3 and counts[0] > counts[1] >= counts[2] >= 0
        assert sum(counts) <= (frames + 1) // 2
        letters[row["answer"]] += 1
    assert all(letters[letter] >= 6 for letter in "ABCD"), letters


@pytest.mark.parametrize("backend", BACKENDS)
def test_between_marks_answer_recovered_from_pixels(tmp_path, backend):
    paths = generate_dataset(tmp_path, num=6, frames=16, seed=6, tasks=("between_marks",))
    for row in all_rows(paths):
        flashes = read_flashes(decode_all(tmp_path, row, backend))
        assert flashes == [(e["frame"], e["colour"], e["shape"]) for e in row["meta"]["events"]]
        marks = [index for index, (_, colour, _) in enumerate(flashes) if colour == MARK_COLOUR]
        assert len(marks) == 2 and marks[1] - marks[0] == 2  # exactly one flash between the marks
        between = flashes[marks[0] + 1][1]
        assert answer_text(row) == between and row["reasoning"].endswith(f"So the answer is {between}.")
        # the options are four distinct colours; every other flash's colour is offered while it fits
        outside = [colour for _, colour, _ in flashes if colour not in (MARK_COLOUR, between)]
        assert len(set(row["options"])) == 4 and set(outside[:3]) <= set(row["options"])


@pytest.mark.parametrize("frames", [8, 9, 64, 300])
def test_between_marks_has_one_flash_between_the_marks(frames):
    letters = Counter()
    for index in range(60):
        row = make_sample(index, frames, seed=7, task="between_marks").row
        meta = row["meta"]
        first, second = meta["mark_frames"]
        inside = [e for e in meta["events"] if first < e["frame"] < second]
        assert [e["frame"] for e in inside] == [meta["between_frame"]] and inside[0]["colour"] == answer_text(row)
        assert MARK_COLOUR not in row["options"]
        event_frames = [e["frame"] for e in meta["events"]]
        assert min(np.diff(event_frames)) >= 2 and event_frames[-1] < frames
        letters[row["answer"]] += 1
    assert all(letters[letter] >= 6 for letter in "ABCD"), letters


def test_the_annotator_names_the_earlier_option_between_close_leading_colours(tmp_path):
    paths = generate_dataset(tmp_path, num=40, frames=16, seed=8, tasks=("majority_colour", "counting"),
                             annotated=True)
    assert set(paths) == {"train", "val", "test", "train_annotated"}
    exact, annotated = rows_of(paths)["train"], rows_of(paths)["train_annotated"]
    assert [row["id"] for row in annotated] == [row["id"] for row in exact]
    wrong = 0
    for true, written in zip(exact, annotated):
        if true["task"] == "counting":
            assert written == true
            continue
        (top, top_n), *others = true["meta"]["counts"].items()
        runner_up, second_n = max(others, key=lambda item: item[1])
        named = answer_text(written)
        # the tally is the true one; only the conclusion may differ, and only between close leading colours
        assert written["reasoning"] == true["reasoning"].replace(f"So {top} ", f"So {named} ")
        assert written["reasoning"].endswith(f"So {named} flashes most often.")
        if second_n == 0 or top_n - second_n > ANNOTATOR_CLOSE_MARGIN:
            assert written == true
        else:
            assert named == min(top, runner_up, key=MAJORITY_COLOURS.index)
            wrong += named != top
        assert {k: v for k, v in written.items() if k not in ("reasoning", "answer")} == \
            {k: v for k, v in true.items() if k not in ("reasoning", "answer")}
    assert 0 < wrong < len(exact) // 2


def test_annotated_rows_are_identical_to_the_exact_ones_without_an_annotator():
    row = make_sample(0, 16, seed=1, task="counting").row
    assert annotated_row(row) == row and "annotator" not in row["meta"]
