"""benchmarks/decode_step.py on a CPU with the tiny model: every path runs on the same engine and prompt, and the old
path (benchmarks/decode_legacy.py, the loop before the captured step) still decodes what the current loop does
greedily."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import longrl  # noqa: F401  (before transformers: the CPU torchvision shim)

sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))  # after tests/: see test_mrsp_bench.py
import decode_step  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)
from longrl.workers.rollout import hf  # noqa: E402
from longrl.workers.rollout.hf import HFRollout  # noqa: E402
from longrl.workers.rollout.sampling import SamplingParams  # noqa: E402
from workload import make_prompts  # noqa: E402

pytestmark = pytest.mark.slow


def test_each_path_prints_its_time_per_step_and_the_ratios(monkeypatch, capsys):
    monkeypatch.setattr(hf, "sample_with_shared_prefill", hf.sample_with_shared_prefill)  # restored afterwards
    monkeypatch.setattr(sys, "argv", ["decode_step.py", "--model", "tiny", "--frames", "2", "--short", "2",
                                      "--long", "4", "--n", "2"])
    decode_step.main()
    lines = capsys.readouterr().out.splitlines()
    for path in decode_step.PATHS:
        assert any(f", {path}: " in line and "ms per decoding step" in line for line in lines), lines
    assert any("old / new time per step: eager" in line and "graphs" in line for line in lines), lines


def test_old_and_current_paths_decode_the_same_greedy_tokens(tiny_model_dir, monkeypatch):
    model_dir = tiny_model_dir("qwen2_5_vl")
    engine = HFRollout(model_dir)
    prompts = make_prompts(model_dir, 2, side=56)
    tokenizer = engine.adapter.load_processor(model_dir).tokenizer
    sampling = SamplingParams(n=2, temperature=0.0, top_p=1.0, top_k=-1, max_new_tokens=6,
                              eos_token_ids=(tokenizer.eos_token_id,), pad_token_id=tokenizer.pad_token_id)
    monkeypatch.setattr(hf, "sample_with_shared_prefill", hf.sample_with_shared_prefill)
    outputs = {}
    for path in decode_step.PATHS:
        decode_step.use_path(engine, path)
        outputs[path] = engine.generate(prompts, sampling)
    for path in ("eager", "graphs"):
        assert torch.equal(outputs[path].tensors["responses"], outputs["old"].tensors["responses"]), path
        torch.testing.assert_close(outputs[path].tensors["rollout_log_probs"],
                                   outputs["old"].tensors["rollout_log_probs"], atol=1e-4, rtol=0)
