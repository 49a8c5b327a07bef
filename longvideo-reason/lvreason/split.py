"""Step 6, split: the kept items as LongVideo-Reason rows, divided into a CoT-SFT file and an RL file.

SFT needs a good trace, so its share is drawn only from items with a refined one: ``round(sft_ratio * kept)`` of
them (fewer if fewer have one), chosen by an RNG seeded with the run seed; every other item goes to RL, which needs
none. Rows have LongVideo-Reason's layout, which longrl reads with ``data.prompt_key=problem data.video_key=videos
data.video_dir=<videos_dir>``::

    {"problem_id": 0, "problem": "...", "data_type": "video", "problem_type": "multiple choice",
     "options": ["...", "..."], "reasoning": "...", "videos": "<path relative to videos_dir>",
     "answer": "<answer>B</answer>", "reasoning_type": "temporal", "item_id": "..."}

``problem_id`` numbers the kept items across both files. ``reasoning`` is the refined trace, else the generated one.
With ``split.inline_options`` the lettered options are written into ``problem`` and ``options`` is left out.
"""

from __future__ import annotations

import random
from typing import Any

from lvreason.backends import ModelPool
from lvreason.config import PipelineConfig
from lvreason.parsing import LETTERS
from lvreason.records import read_jsonl, stable_seed, write_jsonl
from lvreason.workdir import WorkDir


def to_row(item: dict[str, Any], problem_id: int, inline_options: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"problem_id": problem_id, "problem": item["question"], "data_type": "video",
                           "problem_type": "multiple choice"}
    if inline_options:
        row["problem"] += "".join(f"\n{LETTERS[index]}. {option}" for index, option in enumerate(item["options"]))
    else:
        row["options"] = item["options"]
    return {**row, "reasoning": item["refined_reasoning"] or item["reasoning"], "videos": item["video"],
            "answer": f"<answer>{item['answer']}</answer>", "reasoning_type": item["type"], "item_id": item["item_id"]}


def choose_sft(items: list[dict[str, Any]], sft_ratio: float, seed: int) -> set[str]:
    """The item ids that go to SFT."""
    candidates = [item["item_id"] for item in items if item["refined_reasoning"]]
    count = min(len(candidates), round(sft_ratio * len(items)))
    return set(random.Random(stable_seed(seed, "split")).sample(candidates, count))


def run(cfg: PipelineConfig, work: WorkDir, models: ModelPool) -> dict[str, Any]:
    items = read_jsonl(work.kept)
    sft_ids = choose_sft(items, cfg.split.sft_ratio, cfg.seed)
    rows = [to_row(item, problem_id, cfg.split.inline_options) for problem_id, item in enumerate(items)]
    sft = write_jsonl(work.sft, (row for row in rows if row["item_id"] in sft_ids))
    rl = write_jsonl(work.rl, (row for row in rows if row["item_id"] not in sft_ids))
    return {"items": len(items), "sft": sft, "rl": rl}
