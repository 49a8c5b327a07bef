"""``python -m longrl.eval`` end to end: a tiny Qwen2.5-VL on four synthetic videos writes consistent outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longrl.data.rows import DatasetRowError
from longrl.data.synthetic import generate_dataset
from longrl.eval import evaluate
from longrl.eval.__main__ import main
from longrl.eval.runner import default_output_dir, model_tag


def _with_bad_rows(good: list[dict], root: Path) -> list[dict]:
    """``good`` with three rows eval cannot read in between: a missing video, a video cut short (its header and first
    frame still read, so only decoding finds it) and a row without an answer."""
    video = root / good[0]["video"]
    (root / "cut.mp4").write_bytes(video.read_bytes()[: video.stat().st_size * 4 // 5])
    bad = [{**good[0], "id": "missing", "video": "gone.mp4"}, {**good[0], "id": "cut", "video": "cut.mp4"},
           {key: value for key, value in good[0].items() if key != "answer"}]
    return [good[0], bad[0], good[1], bad[1], bad[2], *good[2:]]


@pytest.fixture(scope="module")
def synthetic_rows(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Four synthetic rows (8 s videos) and their directory."""
    root = tmp_path_factory.mktemp("eval") / "data"
    splits = generate_dataset(root, num=4, frames=16, seed=1, size=56, fps=2.0)
    return root, [json.loads(line) for split in ("train", "val", "test") for line in splits[split].read_text().splitlines()]


def test_eval_writes_metrics_that_match_its_generations(tiny_model_dir, synthetic_rows, tmp_path, capsys):
    root, rows = synthetic_rows
    bench = root / "bench.jsonl"
    bench.write_text("".join(json.dumps(row) + "\n" for row in _with_bad_rows(rows, root)))
    out = tmp_path / "out"
    args = ["--model", str(tiny_model_dir("qwen2_5_vl")), "--data", str(bench), "--num-video-frames", "4",
            "--max-new-tokens", "6", "--batch-size", "3", "--no-thinking", "--output-dir", str(out)]
    with pytest.raises(DatasetRowError, match=r"bench.jsonl row 4: missing key 'answer'"):
        main(args)  # on_bad_row=error by default, as in training: the rows are read first
    main([*args, "--on-bad-row", "skip"])

    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [row["id"] for row in rows]
    assert [r["gold"] for r in records] == [row["answer"] for row in rows]
    assert all(isinstance(r["generation"], str) and r["duration"] == "0-2min" for r in records)  # 8 s videos
    metrics = json.loads((out / "metrics.json").read_text())
    correct = sum(r["correct"] for r in records)
    assert (metrics["total"], metrics["correct"]) == (4, correct)
    assert metrics["accuracy"] == correct / 4
    tasks = {}
    for row, record in zip(rows, records):
        tasks.setdefault(row["task"], []).append(record["correct"])
    assert metrics["per_category"]["task"] == {
        task: {"accuracy": sum(flags) / len(flags), "correct": sum(flags), "total": len(flags)}
        for task, flags in sorted(tasks.items())}
    assert metrics["per_duration"] == {"0-2min": {"accuracy": correct / 4, "correct": correct, "total": 4}}
    assert metrics["config"]["thinking"] is False and metrics["config"]["num_video_frames"] == 4
    assert metrics["skipped_rows"] == 3 and metrics["config"]["on_bad_row"] == "skip"
    assert [(skip["row"], skip["reason"].split(":")[0]) for skip in metrics["skipped"]] == [
        (4, "malformed row"), (1, "unreadable video"), (3, "unreadable video")]
    assert "truncated" in metrics["skipped"][2]["reason"]  # found only while decoding
    printed = capsys.readouterr().out
    assert f"accuracy {correct / 4:.4f} ({correct}/4)" in printed and str(out / "metrics.json") in printed
    assert "skipped 3 rows that could not be read" in printed


def test_a_video_that_fails_while_decoding_names_its_row(tiny_model_dir, synthetic_rows, tmp_path):
    root, rows = synthetic_rows
    bench = root / "cut.jsonl"
    bench.write_text(json.dumps(_with_bad_rows(rows, root)[3]) + "\n")
    with pytest.raises(DatasetRowError, match=r"cut.jsonl row 0 \(video .*cut.mp4\): unreadable video: .*truncated"):
        evaluate(tiny_model_dir("qwen2_5_vl"), bench, num_video_frames=4, max_new_tokens=2, output_dir=tmp_path)


def test_every_checkpoint_gets_its_own_output_folder(tmp_path):
    steps = [tmp_path / run / f"global_step_{step}" / "actor" / "merged" for run in ("a/exp", "b/exp") for step in (1, 2)]
    for path in steps:
        path.mkdir(parents=True)
    folders = [default_output_dir(path, "bench.jsonl") for path in steps]
    assert len(set(folders)) == 4 and all(folder.name == "bench" for folder in folders)
    assert folders[0].parent.name.startswith("exp--global_step_1--actor--merged--")
    assert folders[2].parent.name.startswith("exp--global_step_1--actor--merged--")  # same tail, other run
    assert default_output_dir(steps[0], "x.jsonl").parent == folders[0].parent  # stable
    assert model_tag("Qwen/Qwen2.5-VL-3B-Instruct").startswith("Qwen--Qwen2.5-VL-3B-Instruct--")
