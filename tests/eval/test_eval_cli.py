"""``python -m longrl.eval`` end to end: a tiny Qwen2.5-VL on four synthetic videos writes consistent outputs."""

from __future__ import annotations

import json

from longrl.data.synthetic import generate_dataset
from longrl.eval.__main__ import main


def test_eval_writes_metrics_that_match_its_generations(tiny_model_dir, tmp_path, capsys):
    splits = generate_dataset(tmp_path / "data", num=4, frames=16, seed=1, size=56, fps=2.0)
    bench = tmp_path / "data" / "bench.jsonl"
    bench.write_text("".join(splits[split].read_text() for split in ("train", "val", "test")))
    out = tmp_path / "out"
    main(["--model", str(tiny_model_dir("qwen2_5_vl")), "--data", str(bench), "--num-video-frames", "4",
          "--max-new-tokens", "6", "--batch-size", "3", "--no-thinking", "--output-dir", str(out)])

    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in bench.read_text().splitlines()]
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
    printed = capsys.readouterr().out
    assert f"accuracy {correct / 4:.4f} ({correct}/4)" in printed and str(out / "metrics.json") in printed
