"""The whole pipeline on real videos with tiny local models (random weights: the text is noise, the plumbing is real),
then the output loaded by longrl's row reader and VideoQADataset; then resuming (from the command line) and forcing.

The LLM-judged filters would drop every item of a random model, so ``answerable`` and ``single_clip`` are off here
(their decisions are tested with planted replies in test_filters.py); the rollout filter runs, with bounds that keep
every accuracy, so the rollout VLM still answers each item on its video.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from longrl.config.schema import DataConfig, RolloutConfig
from longrl.data.dataset import VideoQADataset
from longrl.data.rows import iter_rows
from longrl.models import get_adapter
from lvr_helpers import REPO
from lvreason.config import load_config
from lvreason.parsing import LETTERS, normalise
from lvreason.pipeline import run_pipeline

pytestmark = pytest.mark.slow

CONFIG = """
videos_dir: {videos}
work_dir: {work}
seed: 0
models:
  captioner: &vlm {{backend: local, model: {vlm}, num_frames: 2, max_pixels: 4096}}
  rollout: *vlm
  generator: &llm {{backend: local, model: {llm}, batch_size: 16}}
  refiner: *llm
  solver: *llm
segment: {{clip_seconds: 5}}
caption: {{max_tokens: 6, temperature: 1.0}}  # greedy decoding of a random model writes blanks
generate:
  num_options: 3
  temperature: 1.0
  question: {{max_tokens: 8}}
  answer: {{max_tokens: 5}}
  distractor: {{max_tokens: 5}}
  reasoning: {{max_tokens: 8}}
refine: {{max_tokens: 8, temperature: 1.0, require_answer: false}}
filter:
  answerable: {{enabled: false}}
  single_clip: {{enabled: false}}
  rollout: {{n: 2, max_tokens: 4, low: -1.0, high: 2.0}}
split: {{sft_ratio: 0.5}}
"""


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, long_videos, tiny_model_dir):
    root = tmp_path_factory.mktemp("pipeline")
    config = root / "config.yaml"
    config.write_text(CONFIG.format(videos=long_videos, work=root / "work", vlm=tiny_model_dir("qwen2_5_vl"),
                                    llm=tiny_model_dir("qwen2")))
    results = run_pipeline(load_config(config))
    return config, root / "work", results


def test_every_step_runs_and_the_counts_add_up(finished_run):
    _, work, results = finished_run
    assert all(result.ran for result in results.values()) and list(results) == [
        "segment", "caption", "generate", "refine", "filter", "split"]
    clips = _read(work / "segments.jsonl")
    assert [(c["video"], c["num_frames"]) for c in clips] == [
        ("cooking.mp4", 10), ("cooking.mp4", 10), ("cooking.mp4", 4), ("sports/match.mp4", 10),
        ("sports/match.mp4", 10)]
    assert [c["clip"] for c in _read(work / "captions.jsonl")] == [c["clip"] for c in clips]
    generate = results["generate"].stats
    assert generate["attempted"] == 2 * 4  # two videos, four reasoning types
    items = _read(work / "items.jsonl")
    assert generate["items"] == len(items) > 0
    assert generate["items"] + sum(generate["dropped"].values()) == 8 == len(items) + len(
        _read(work / "generate_rejects.jsonl"))
    assert {item["type"] for item in items} <= {"temporal", "goal_and_purpose", "spatial", "plot_and_narrative"}
    for item in items:
        assert len(item["options"]) == 3 and len({normalise(o) for o in item["options"]}) == 3
        assert item["options"][LETTERS.index(item["answer"])] == item["answer_text"]
        assert item["question"] and item["reasoning"]
    report = _read(work / "filter_report.jsonl")
    assert [entry["item_id"] for entry in report] == [item["item_id"] for item in items]
    for entry in report:
        assert entry["kept"] and entry["checks"]["answerable"] == {"status": "disabled"}
        rollout = entry["checks"]["rollout"]
        assert rollout["accuracy"] in (0.0, 0.5, 1.0) and len(rollout["choices"]) == 2
    split = results["split"].stats
    refined_ok = sum(row["refined_reasoning"] is not None for row in _read(work / "refined.jsonl"))
    assert split["sft"] == min(refined_ok, round(0.5 * len(items))) and split["sft"] + split["rl"] == len(items)


def test_the_dataset_loads_in_longrl(finished_run, long_videos, tiny_model_dir):
    _, work, _ = finished_run
    items = {item["item_id"]: item for item in _read(work / "refined.jsonl")}
    files = f"{work / 'dataset' / 'sft.jsonl'},{work / 'dataset' / 'rl.jsonl'}"
    data = DataConfig(train_files=files, prompt_key="problem", video_key="videos", video_dir=str(long_videos),
                      max_pixels=4096)
    raw = _read(work / "dataset" / "sft.jsonl") + _read(work / "dataset" / "rl.jsonl")
    assert sorted(row["problem_id"] for row in raw) == list(range(len(items)))
    assert all(row["data_type"] == "video" and row["answer"].startswith("<answer>") for row in raw)
    rows = list(iter_rows(files, data))
    assert len(rows) == len(items)
    for loaded, written in zip(rows, raw):
        item = items[written["item_id"]]
        assert loaded.uid == str(written["problem_id"]) and loaded.task == "multiple choice"
        assert loaded.question == item["question"] and loaded.options == item["options"]
        assert loaded.answer == item["answer"] and loaded.options[LETTERS.index(loaded.answer)] == item["answer_text"]
        assert loaded.video == str(long_videos / item["video"]) and Path(loaded.video).is_file()
        assert loaded.reasoning == (item["refined_reasoning"] or item["reasoning"])
    vlm = tiny_model_dir("qwen2_5_vl")
    adapter = get_adapter("qwen2_5_vl")
    processor = adapter.load_processor(vlm)
    dataset = VideoQADataset(files, data, RolloutConfig(num_video_frames=2), adapter, processor)
    assert len(dataset) == len(items) and not dataset.skipped
    sample = dataset[0]
    assert sample["answer"] == rows[0].answer and sample["options"] == rows[0].options
    video_token = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert int((sample["inputs"]["input_ids"] == video_token).sum()) == 4  # 2 frames of 56x56 -> one 2x2 merge grid
    text = processor.tokenizer.decode(sample["inputs"]["input_ids"])
    assert all(f"{letter}. " in text for letter in "ABC")


def test_a_second_run_from_the_command_line_skips_every_step(finished_run):
    config, work, _ = finished_run
    before = _snapshot(work)
    done = subprocess.run([sys.executable, str(REPO / "longvideo-reason" / "pipeline.py"), "--config", str(config)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{step}: skipped (outputs exist)" for step in (
        "segment", "caption", "generate", "refine", "filter", "split")]
    assert _snapshot(work) == before


def test_forcing_a_step_reruns_it_and_the_later_ones_only(finished_run):
    config, work, _ = finished_run
    before = _snapshot(work)
    cfg = load_config(config, ["force=[filter]", "split.sft_ratio=0.0", "filter.rollout.enabled=false"])
    results = run_pipeline(cfg)
    assert {name: result.ran for name, result in results.items()} == {
        "segment": False, "caption": False, "generate": False, "refine": False, "filter": True, "split": True}
    after = _snapshot(work)
    for name in ("segments.jsonl", "captions.jsonl", "items.jsonl", "refined.jsonl"):
        assert after[name] == before[name]
    assert after["dataset/sft.jsonl"][0] == b"" and len(_read(work / "dataset" / "rl.jsonl")) == len(
        _read(work / "items.jsonl"))
    assert all(entry["checks"]["rollout"] == {"status": "disabled"} for entry in _read(work / "filter_report.jsonl"))
