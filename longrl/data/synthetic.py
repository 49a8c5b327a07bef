"""Synthetic long-video multiple-choice tasks whose answers need memory across the whole video.

Five tasks, each a scene of flat shapes (``synthetic_scenes``) plus a question, shuffled options, the
answer letter, a step-by-step reasoning trace (for CoT-SFT) and the ground truth in ``meta``:

* ``shell_game``: three identical cups are lifted to show the ball under one of them, lowered, then
  swapped many times (moving cups leave the middle row: one passes above, one below); where is the ball?
* ``counting``: a coloured shape flashes k times among flashes of other colours; how many times?
* ``temporal_order``: several distinct coloured shapes flash once each; which came first / last, or in
  what order?
* ``majority_colour``: large shapes of up to three of four colours flash; which colour flashes most often (options
  always red, green, blue, yellow)? The answer is spread over the whole video but needs no exact count or order, so
  it is the task a tiny model learns within a CPU-minutes SFT stage (the quickstart's two-stage pipeline
  uses it); it is not in the default mix. Its rows also carry an imperfect annotator's trace (``meta["annotator"]``,
  written out as ``train_annotated.jsonl`` by ``--annotated``): right tallies, but between two leading colours
  within two flashes of each other it names the one offered first; the CoT data the quickstart's SFT stage learns
  from.
* ``between_marks``: a large white square flashes twice; shapes of other colours flash before, between (exactly
  one) and after the marks; which colour flashes between them? Only the order of events across the whole video
  tells the between-flash from the others, whose colours are among the options. Not in the default mix.

Each flash lasts one frame, so frame sampling must keep every frame of these videos for the answer to stay
visible to the model. Sample ``i`` of a dataset depends only on ``(seed, i)``: the same seed gives the same
rows and byte-identical videos. Run ``python -m longrl.data.synthetic --out DIR --num N --frames F``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longrl.data.synthetic_scenes import SHAPES, Frame, Sprite, render_scene, write_mp4

TASKS = ("shell_game", "counting", "temporal_order")  # the default mix
ALL_TASKS = (*TASKS, "majority_colour", "between_marks")
SPLITS = ("train", "val", "test")
LETTERS = "ABCDEFGH"
MIN_FRAMES = 8
# Raised whenever a seed's rows or videos change, so caches of generated data (the quickstart default's) are rebuilt.
GENERATOR_VERSION = 3

# Shell-game layout, in fractions of the frame side.
SLOT_NAMES = ("left", "middle", "right")
SLOT_X = (1 / 6, 1 / 2, 5 / 6)
HOME_Y, ABOVE_Y, BELOW_Y = 0.5, 0.2, 0.8
CUP_HALF_H, CUP_HALF_W, BALL_HALF = 0.1, 0.11, 0.07
CUP_COLOUR, BALL_COLOUR = "blue", "yellow"
REVEAL_FRAMES = 2

# Colours of flashed shapes in the counting and order tasks (blue and yellow stay the shell game's).
EVENT_COLOURS = ("red", "green", "magenta", "cyan", "white", "blue", "yellow")
EVENT_HALF = 0.2
MAX_COUNT = 8
# The majority-colour task: four colours, always offered in this order, flashed as large centred shapes.
MAJORITY_COLOURS = ("red", "green", "blue", "yellow")
MAJORITY_HALF = 0.4
# The imperfect annotator of train_annotated.jsonl: its tallies are right, but when the two leading colours are within
# this many flashes of each other it names the one offered first (the earlier option letter), the position bias of
# a weaker model breaking a near-tie. The bias is systematic, so a model trained on these traces learns it; a coin flip
# would average out under SFT and leave RL nothing to correct.
ANNOTATOR_CLOSE_MARGIN = 2
# The between-marks task: a large white square flashes twice as the marks; flashes of other colours (options among
# them) come before, between (exactly one) and after.
MARK_COLOUR, MARK_HALF = "white", 0.4
BETWEEN_OPTIONS = 4
BETWEEN_COLOURS = tuple(c for c in EVENT_COLOURS if c != MARK_COLOUR)


@dataclass
class Sample:
    """One task instance: the jsonl row (without the video path) and the scene to render."""

    row: dict
    scene: list[Frame]


@dataclass
class _TaskDraw:
    question: str
    correct: str
    distractors: list[str]
    reasoning: str
    meta: dict
    scene: list[Frame]
    # Options in this fixed order instead of shuffled (a task whose options are a fixed set).
    option_order: list[str] | None = None


def _seconds(frame: int, fps: float) -> str:
    return f"{frame / fps:.1f}s"


def _cup(slot_x: float, y: float) -> Sprite:
    return Sprite("square", CUP_COLOUR, y, slot_x, CUP_HALF_H, CUP_HALF_W)


def _cups_at_home() -> Frame:
    return tuple(_cup(x, HOME_Y) for x in SLOT_X)


def _shell_game(rng: np.random.Generator, frames: int, fps: float) -> _TaskDraw:
    ball = int(rng.integers(3))
    lifted = tuple(_cup(x, ABOVE_Y) for x in SLOT_X) + (
        Sprite("circle", BALL_COLOUR, HOME_Y, SLOT_X[ball], BALL_HALF, BALL_HALF),
    )
    scene: list[Frame] = [lifted] * REVEAL_FRAMES + [_cups_at_home()]
    ball_slots = [ball] * len(scene)
    steps = [f"At {_seconds(0, fps)} the cups are lifted and the ball is under the {SLOT_NAMES[ball]} cup."]
    swaps = []
    while True:
        moving = int(rng.integers(1, 3))
        if len(scene) + moving + 1 > frames:  # a swap is always followed by at least one frame at rest
            break
        over, under = (int(s) for s in rng.choice(3, size=2, replace=False))
        still = 3 - over - under
        start = len(scene)
        for step in range(moving):
            progress = (step + 1) / (moving + 1)
            scene.append(
                (
                    _cup(SLOT_X[still], HOME_Y),
                    _cup(SLOT_X[over] + (SLOT_X[under] - SLOT_X[over]) * progress, ABOVE_Y),
                    _cup(SLOT_X[under] + (SLOT_X[over] - SLOT_X[under]) * progress, BELOW_Y),
                )
            )
            ball_slots.append(ball)
        swaps.append({"start_frame": start, "end_frame": start + moving - 1, "slots": sorted([over, under])})
        pair = " and ".join(SLOT_NAMES[s] for s in sorted([over, under]))
        if ball in (over, under):
            new_ball = over + under - ball
            effect = f"the ball's cup moves from the {SLOT_NAMES[ball]} to the {SLOT_NAMES[new_ball]}"
            ball = new_ball
        else:
            effect = f"the ball stays under the {SLOT_NAMES[ball]} cup"
        steps.append(f"At {_seconds(start, fps)} the {pair} cups swap places; {effect}.")
        rest = min(int(rng.integers(1, 3)), frames - len(scene))
        scene.extend([_cups_at_home()] * rest)
        ball_slots.extend([ball] * rest)
    scene.extend([_cups_at_home()] * (frames - len(scene)))
    ball_slots.extend([ball] * (frames - len(ball_slots)))
    steps.append(f"After the last swap the ball is under the {SLOT_NAMES[ball]} cup.")
    return _TaskDraw(
        question=(
            "Three identical cups stand in a row. At the start they are lifted to show which cup hides the "
            "ball; then the cups are swapped many times. Under which cup is the ball at the end of the video?"
        ),
        correct=SLOT_NAMES[ball],
        distractors=[name for slot, name in enumerate(SLOT_NAMES) if slot != ball],
        reasoning=" ".join(steps),
        meta={
            "initial_slot": int(ball_slots[0]),
            "final_slot": ball,
            "reveal_frames": list(range(REVEAL_FRAMES)),
            "swaps": swaps,
            # slot of the cup hiding the ball; during a swap, the slot the cup left
            "ball_slot_per_frame": ball_slots,
        },
        scene=scene,
    )


def _spaced_frames(rng: np.random.Generator, frames: int, count: int) -> list[int]:
    """``count`` sorted frame numbers in [0, frames) with at least one frame between any two."""
    picks = np.sort(rng.choice(frames - count + 1, size=count, replace=False))
    return [int(p) + i for i, p in enumerate(picks)]


def _flash(rng: np.random.Generator, colour: str, shape: str) -> Sprite:
    cy, cx = rng.uniform(0.3, 0.7, size=2)
    return Sprite(shape, colour, float(cy), float(cx), EVENT_HALF, EVENT_HALF)


def _event_scene(frames: int, events: Sequence[dict], sprites: Sequence[Sprite]) -> list[Frame]:
    scene: list[Frame] = [()] * frames
    for event, sprite in zip(events, sprites):
        scene[event["frame"]] = (sprite,)
    return scene


def _name(event: dict) -> str:
    return f"{event['colour']} {event['shape']}"


def _counting(rng: np.random.Generator, frames: int, fps: float) -> _TaskDraw:
    room = (frames + 1) // 2  # flashes that fit with a blank frame between any two
    target_colour = str(rng.choice(EVENT_COLOURS))
    target_shape = str(rng.choice(SHAPES))
    count = int(rng.integers(1, min(MAX_COUNT, room) + 1))
    others = int(rng.integers(0, min(MAX_COUNT, room - count) + 1))
    is_target = rng.permutation([True] * count + [False] * others)
    other_colours = [c for c in EVENT_COLOURS if c != target_colour]
    events, sprites = [], []
    for frame, hit in zip(_spaced_frames(rng, frames, count + others), is_target):
        colour = target_colour if hit else str(rng.choice(other_colours))
        shape = target_shape if hit else str(rng.choice(SHAPES))
        events.append({"frame": frame, "colour": colour, "shape": shape, "target": bool(hit)})
        sprites.append(_flash(rng, colour, shape))
    target = f"{target_colour} {target_shape}"
    hits = [e for e in events if e["target"]]
    steps = [f"I look for flashes of a {target}."]
    for n, event in enumerate(hits, start=1):
        steps.append(f"Flash {n} of the {target} is at {_seconds(event['frame'], fps)}.")
    misses = [f"{_name(e)} at {_seconds(e['frame'], fps)}" for e in events if not e["target"]]
    if misses:
        steps.append(f"The other flashes are not a {target}: {', '.join(misses)}.")
    steps.append(f"So the {target} flashes {count} time{'s' if count != 1 else ''}.")
    wrong = [n for n in range(max(0, count - 3), count + 4) if n != count]
    return _TaskDraw(
        question=f"Coloured shapes flash briefly during the video. How many times does a {target} flash?",
        correct=str(count),
        distractors=[str(n) for n in rng.choice(wrong, size=3, replace=False)],
        reasoning=" ".join(steps),
        meta={
            "target_colour": target_colour,
            "target_shape": target_shape,
            "count": count,
            "event_frames": [e["frame"] for e in hits],
            "events": events,
        },
        scene=_event_scene(frames, events, sprites),
    )


def _temporal_order(rng: np.random.Generator, frames: int, fps: float) -> _TaskDraw:
    count = int(rng.integers(3, 5))
    colours = [str(c) for c in rng.choice(EVENT_COLOURS, size=count, replace=False)]
    events, sprites = [], []
    for frame, colour in zip(_spaced_frames(rng, frames, count), colours):
        shape = str(rng.choice(SHAPES))
        events.append({"frame": frame, "colour": colour, "shape": shape})
        sprites.append(_flash(rng, colour, shape))
    names = [_name(e) for e in events]
    kind = str(rng.choice(["first", "last", "order"]))
    timeline = "; ".join(f"the {name} at {_seconds(e['frame'], fps)}" for name, e in zip(names, events))
    steps = [f"The shapes appear one at a time: {timeline}."]
    if kind == "order":
        question = "Coloured shapes appear one at a time during the video. In what order do they appear?"
        correct = ", ".join(names)
        wrong: set[str] = set()
        while len(wrong) < 3:
            candidate = ", ".join(names[i] for i in rng.permutation(count))
            if candidate != correct:
                wrong.add(candidate)
        distractors = sorted(wrong)
        steps.append(f"So the order is: {correct}.")
    else:
        question = f"Coloured shapes appear one at a time during the video. Which shape appears {kind}?"
        correct = names[0] if kind == "first" else names[-1]
        distractors = [n for n in names if n != correct]
        steps.append(f"So the {correct} appears {kind}.")
    return _TaskDraw(
        question=question,
        correct=correct,
        distractors=distractors,
        reasoning=" ".join(steps),
        meta={"question_type": kind, "events": events, "order": names},
        scene=_event_scene(frames, events, sprites),
    )


def _majority_colour(rng: np.random.Generator, frames: int, fps: float) -> _TaskDraw:
    room = (frames + 1) // 2  # flashes that fit with a blank frame between any two
    top = int(rng.integers(3, min(5, room) + 1))
    second = int(rng.integers(0, min(top - 1, room - top) + 1))
    third = int(rng.integers(0, min(top - 1, room - top - second) + 1))
    ranked = [str(c) for c in rng.permutation(MAJORITY_COLOURS)]
    counts = {colour: n for colour, n in zip(ranked, (top, second, third, 0))}
    flashes = rng.permutation([colour for colour, n in counts.items() for _ in range(n)])
    events, sprites = [], []
    for frame, colour in zip(_spaced_frames(rng, frames, len(flashes)), flashes):
        shape = str(rng.choice(SHAPES))
        events.append({"frame": frame, "colour": str(colour), "shape": shape})
        sprites.append(Sprite(shape, str(colour), 0.5, 0.5, MAJORITY_HALF, MAJORITY_HALF))
    tally = ", ".join(f"{colour} {n}" for colour, n in counts.items() if n)
    runner_up = max(ranked[1:], key=lambda colour: counts[colour])  # the first of equal counts
    close = counts[runner_up] > 0 and top - counts[runner_up] <= ANNOTATOR_CLOSE_MARGIN
    named = min(ranked[0], runner_up, key=MAJORITY_COLOURS.index) if close else ranked[0]
    return _TaskDraw(
        question="Shapes of several colours flash briefly during the video. Which colour flashes most often?",
        correct=ranked[0],
        distractors=ranked[1:],
        reasoning=f"I tally the flashes by colour: {tally}. So {ranked[0]} flashes most often.",
        meta={"counts": counts, "events": events,
              "annotator": {"answer_text": named,
                            "reasoning": f"I tally the flashes by colour: {tally}. So {named} flashes most often."}},
        scene=_event_scene(frames, events, sprites),
        option_order=list(MAJORITY_COLOURS),
    )


def _between_marks(rng: np.random.Generator, frames: int, fps: float) -> _TaskDraw:
    room = (frames + 1) // 2  # flashes that fit with a blank frame between any two
    others = int(rng.integers(1, min(4, room - 3) + 1))  # flashes before the first mark or after the second
    colours = [str(c) for c in rng.permutation(BETWEEN_COLOURS)]
    between, outside, unseen = colours[0], colours[1:others + 1], colours[others + 1:]
    before = int(rng.integers(0, others + 1))
    kinds = ["outside"] * before + ["mark", "between", "mark"] + ["outside"] * (others - before)
    events, sprites = [], []
    outside_colours = iter(outside)
    for frame, kind in zip(_spaced_frames(rng, frames, len(kinds)), kinds):
        colour = MARK_COLOUR if kind == "mark" else between if kind == "between" else next(outside_colours)
        shape = "square" if kind == "mark" else str(rng.choice(SHAPES))
        events.append({"frame": frame, "colour": colour, "shape": shape, "kind": kind})
        sprites.append(Sprite(shape, colour, 0.5, 0.5, MARK_HALF, MARK_HALF) if kind == "mark"
                       else _flash(rng, colour, shape))
    marks = [e for e in events if e["kind"] == "mark"]
    inside = next(e for e in events if e["kind"] == "between")
    steps = [f"The {MARK_COLOUR} square flashes at {_seconds(marks[0]['frame'], fps)} and "
             f"{_seconds(marks[1]['frame'], fps)}."]
    rest = [f"the {_name(e)} at {_seconds(e['frame'], fps)}" for e in events if e["kind"] == "outside"]
    steps.append(f"Outside them: {', '.join(rest)}.")
    steps.append(f"Between them the {_name(inside)} flashes at {_seconds(inside['frame'], fps)}. So the answer is "
                 f"{between}.")
    return _TaskDraw(
        question=(f"A {MARK_COLOUR} square flashes twice during the video, and shapes of other colours flash before, "
                  f"between and after. Which colour flashes between the two {MARK_COLOUR} squares?"),
        correct=between,
        distractors=(outside + unseen)[:BETWEEN_OPTIONS - 1],  # the outside flashes' colours first
        reasoning=" ".join(steps),
        meta={"mark_frames": [e["frame"] for e in marks], "between_frame": inside["frame"], "events": events},
        scene=_event_scene(frames, events, sprites),
    )


_TASK_DRAWERS = {"shell_game": _shell_game, "counting": _counting, "temporal_order": _temporal_order,
                 "majority_colour": _majority_colour, "between_marks": _between_marks}


def make_sample(index: int, frames: int, seed: int = 0, fps: float = 2.0, task: str | None = None,
                open_ended: bool = False) -> Sample:
    """Sample ``index`` of the dataset for ``seed`` (task ``TASKS[index % 3]`` unless ``task`` is given).

    ``open_ended`` drops the options: the answer is then the correct option's text (graded by a judge, not a rule).
    """
    if frames < MIN_FRAMES:
        raise ValueError(f"synthetic videos need at least {MIN_FRAMES} frames, got {frames}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    task = TASKS[index % len(TASKS)] if task is None else task
    if task not in _TASK_DRAWERS:
        raise ValueError(f"unknown synthetic task {task!r}; expected one of {ALL_TASKS}")
    rng = np.random.default_rng([seed, index])
    draw = _TASK_DRAWERS[task](rng, frames, fps)
    options = [draw.correct, *draw.distractors]
    order = (rng.permutation(len(options)) if draw.option_order is None
             else np.array([options.index(option) for option in draw.option_order]))
    sample_id = f"{task}_{index:06d}"
    row = {
        "id": sample_id,
        "video": f"videos/{sample_id}.mp4",
        "question": draw.question,
        "options": None if open_ended else [options[i] for i in order],
        "answer": draw.correct if open_ended else LETTERS[int(np.flatnonzero(order == 0)[0])],
        "reasoning": draw.reasoning,
        "task": task,
        "meta": {"fps": fps, "num_frames": frames, "answer_text": draw.correct, **draw.meta},
    }
    return Sample(row=row, scene=draw.scene)


def split_indices(num: int, seed: int = 0) -> dict[str, list[int]]:
    """Shuffle 0..num-1 by seed into train / val / test, about 80 / 10 / 10, none empty."""
    if num < len(SPLITS):
        raise ValueError(f"need at least {len(SPLITS)} samples to fill train/val/test, got {num}")
    held_out = max(1, round(0.1 * num))
    order = np.random.default_rng([seed, num]).permutation(num)
    return {
        "val": sorted(int(i) for i in order[:held_out]),
        "test": sorted(int(i) for i in order[held_out : 2 * held_out]),
        "train": sorted(int(i) for i in order[2 * held_out :]),
    }


def annotated_row(row: dict) -> dict:
    """``row`` as the imperfect annotator wrote it: its reasoning trace and answer (``meta["annotator"]``), which for
    ``majority_colour`` name the earlier-offered of the two leading colours when they are within
    :data:`ANNOTATOR_CLOSE_MARGIN` flashes; every other row is unchanged."""
    annotator = row["meta"].get("annotator")
    if annotator is None:
        return row
    named = annotator["answer_text"]
    answer = named if row["options"] is None else LETTERS[row["options"].index(named)]
    return {**row, "reasoning": annotator["reasoning"], "answer": answer}


def generate_dataset(
    out_dir: str | os.PathLike, num: int, frames: int, seed: int = 0, size: int = 112, fps: float = 2.0,
    open_ended: bool = False, tasks: Sequence[str] = TASKS, annotated: bool = False,
) -> dict[str, Path]:
    """Write ``num`` videos under ``out_dir/videos`` and ``train/val/test.jsonl``; return split -> jsonl path.

    Sample ``i`` is of task ``tasks[i % len(tasks)]``. ``annotated`` also writes ``train_annotated.jsonl`` (returned
    as ``"train_annotated"``): the train rows with the traces and answers of an imperfect annotator
    (:func:`annotated_row`), the kind of CoT-SFT data a weaker model writes, against which RL on the true answers has
    something to correct."""
    if not tasks:
        raise ValueError(f"tasks must name at least one of {ALL_TASKS}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number of pixels >= 16 (yuv420p), got {size}")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, indices in split_indices(num, seed).items():
        paths[split] = out / f"{split}.jsonl"
        rows = []
        with open(paths[split], "w", encoding="utf-8") as handle:
            for index in indices:
                sample = make_sample(index, frames, seed, fps, task=tasks[index % len(tasks)], open_ended=open_ended)
                write_mp4(out / sample.row["video"], render_scene(sample.scene, size), fps)
                handle.write(json.dumps(sample.row) + "\n")
                rows.append(sample.row)
        if annotated and split == "train":
            paths["train_annotated"] = out / "train_annotated.jsonl"
            paths["train_annotated"].write_text("".join(json.dumps(annotated_row(row)) + "\n" for row in rows))
    return {split: paths[split] for split in (*SPLITS, *(["train_annotated"] if annotated else []))}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--num", type=int, required=True, help="number of videos (>= 3)")
    parser.add_argument("--frames", type=int, required=True, help=f"frames per video (>= {MIN_FRAMES})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=112, help="frame side in pixels")
    parser.add_argument("--fps", type=float, default=2.0, help="frame rate of the written videos")
    parser.add_argument("--open-ended", action="store_true", help="no options; the answer is the correct text")
    parser.add_argument("--annotated", action="store_true",
                        help="also write train_annotated.jsonl: the train rows as an imperfect annotator wrote them")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help=f"comma-separated tasks, sample i of tasks[i % len] (any of {', '.join(ALL_TASKS)})")
    args = parser.parse_args(argv)
    paths = generate_dataset(args.out, args.num, args.frames, args.seed, args.size, args.fps, args.open_ended,
                             tasks=tuple(args.tasks.split(",")), annotated=args.annotated)
    for split, path in paths.items():
        with open(path, encoding="utf-8") as handle:
            print(f"{split}: {sum(1 for _ in handle)} rows -> {path}")


if __name__ == "__main__":
    main()
