"""GRPO on open-ended synthetic questions graded by the LLM judge (a real server on loopback): 2 steps, and the
API key appears in no log, metric or checkpoint file."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from longrl.config.loader import load_config
from longrl.data.synthetic import generate_dataset
from longrl.trainer.main import run

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/rewards"))
from judge_servers import JudgeServerProcess  # noqa: E402

pytestmark = pytest.mark.slow
API_KEY = "sk-test-open-ended-9d1b77-NEVER-WRITTEN"


def test_grpo_with_the_judge_runs_two_steps_and_never_writes_the_key(tiny_model_dir, tmp_path, monkeypatch, caplog):
    data = tmp_path / "data"
    generate_dataset(data, num=10, frames=8, seed=4, open_ended=True)
    row = json.loads((data / "train.jsonl").read_text().splitlines()[0])
    assert row["options"] is None and row["answer"] == row["meta"]["answer_text"]
    server = JudgeServerProcess(tiny_model_dir("qwen2"), API_KEY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    try:
        cfg = load_config([
            f"data.train_files={data / 'train.jsonl'}", f"data.val_files={data / 'val.jsonl'}", "data.video_dir=null",
            f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}",
            f"worker.actor.model.model_path={tiny_model_dir('qwen2_5_vl')}", "data.rollout_batch_size=2",
            "worker.actor.global_batch_size=2", "worker.rollout.n=4", "worker.rollout.num_video_frames=4",
            "data.max_response_length=8", "worker.rollout.open_ended_reward=true",
            f"worker.reward.judge.base_url={server.url}", "worker.reward.judge.model=judge",
            f"worker.reward.judge.prompt_template={REPO / 'examples/judge/open_ended.jinja'}",
            "worker.reward.judge.score_pattern='([01])'", "worker.reward.judge.max_tokens=2",
            "trainer.max_steps=2", "trainer.save_freq=1", "trainer.val_before_train=false",
            f"trainer.save_checkpoint_path={tmp_path / 'ckpt'}", "trainer.experiment_name=open_ended",
            "trainer.logger=[console,file]"])
        cfg.worker.reward.judge.extra_body = {"logit_bias": {"16": 100.0}}  # steer the random judge to "1"
        with caplog.at_level(logging.INFO):
            run(cfg)
    finally:
        server.stop()
    steps = [json.loads(line) for line in (tmp_path / "outputs/logs/longrl/open_ended/metrics.jsonl").read_text()
             .splitlines()]
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        # 2 prompts x 4 responses, every row open-ended: each distinct response is one request, repeats are cached.
        assert m["judge/requests"] + m.get("judge/cache_hits", 0) == 8
        assert m["reward/accuracy"] == 1.0  # the steered judge says "1" for every answer
        assert m["timing_s/reward_compute"] > 0 and "judge/failed" not in m and "judge/malformed" not in m
    assert steps[-1]["val/judge/requests"] + steps[-1].get("val/judge/cache_hits", 0) == 1  # 1 val row, greedy
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.name.startswith("global_step")) == [
        "global_step_1", "global_step_2"]
    written = [p for root in (tmp_path / "ckpt", tmp_path / "outputs") for p in root.rglob("*") if p.is_file()]
    assert written and not [p for p in written if API_KEY.encode() in p.read_bytes()]
    assert API_KEY not in caplog.text and not any(API_KEY in line for line in server.log)
