"""benchmarks/step.py on a CPU with the tiny model: its floor arithmetic against torch's FLOP counter, and its three
configurations doing the work they claim (vision-tower passes, one shared encoding, the same prompt), tabled."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import longrl  # noqa: F401  (before transformers: the CPU torchvision shim)

sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))  # after tests/: see test_mrsp_bench.py
import step as bench  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)
from step_flops import StepShape, TextShape, VisionShape, step_floor  # noqa: E402
from workload import build_model  # noqa: E402

N, LENGTH = 4, 8


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def test_text_flops_equal_the_counted_matmuls_of_a_forward():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=300, tie_word_embeddings=True, attn_implementation="eager")
    model = Qwen2ForCausalLM(config).eval()
    ids = torch.randint(0, 300, (1, 40))
    shape = TextShape.of(config)
    # Eager attention multiplies the whole score matrix (no causal skipping): the non-causal count.
    expected = shape.linear_flops(40, 7) + shape.attention_flops(40, 40, causal=False)
    assert _counted(lambda: model(input_ids=ids, logits_to_keep=7)) == expected
    assert shape.attention_flops(40, 40, causal=True) * 2 == shape.attention_flops(40, 40, causal=False)


def test_vision_flops_equal_the_counted_matmuls_of_the_tower(tiny_model_dir):
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir("qwen2_5_vl"),
                                                                attn_implementation="eager").eval()
    vision = model.config.vision_config
    grid = torch.tensor([[2, 16, 16]])  # 2 temporal slices of 16 x 16 patches
    pixels = torch.randn(2 * 256, vision.in_channels * vision.temporal_patch_size * vision.patch_size ** 2)
    counted = _counted(lambda: model.model.visual(pixels, grid_thw=grid))
    assert counted == VisionShape.of(vision).flops(2 * 256, 256)


def test_floor_splits_the_step_into_its_phases():
    text = TextShape(hidden=2048, intermediate=11008, layers=36, heads=16, kv_heads=2, head_dim=128, vocab=151936)
    vision = VisionShape(hidden=1280, intermediate=3420, depth=32, full_attention_layers=4, patch_dim=1176,
                         window_patches=64, merge=4, out_hidden=2048)
    step = StepShape(prompt=65_565, responses=8, length=512, patches=262_144, patches_per_slice=1024)
    floor = step_floor(text, vision, step, matmul_flops=7.77e14, bandwidth=4.15e12)
    scoring = text.forward_flops(65_565, 8, 512)
    assert floor["old_log_prob_floor_s"] == floor["ref_log_prob_floor_s"] == pytest.approx(scoring / 7.77e14)
    assert floor["update_floor_s"] == pytest.approx(3 * scoring / 7.77e14)
    assert floor["floor_s"] == pytest.approx(sum(v for k, v in floor.items() if k.endswith("_floor_s")))
    # Sharing the prompt: scoring 8 responses costs far less than 8 full sequences, more than one.
    full = text.linear_flops(65_565 + 512, 512) + text.attention_flops(65_565 + 512, 65_565 + 512, causal=True)
    assert full < scoring < 2 * full


def test_job_specs_parse_and_bad_ones_name_the_form():
    assert bench.Job.parse("longrl@2:512,3600x336") == bench.Job("longrl", 2, ((512, 448), (3600, 336)))
    assert bench.Job.parse("longrl-vllm@2:64") == bench.Job("longrl-vllm", 2, ((64, 448),))
    for bad in ("longrl@2", "unknown@1:8", "peer@2:8", "baseline@1:eight"):
        with pytest.raises(SystemExit, match="--job"):
            bench.Job.parse(bad)


@pytest.mark.slow
def test_configurations_on_cpu_do_the_work_they_claim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jobs = [bench.Job.parse(spec) for spec in ("baseline@1:4x56", "longrl@1:4x56,6x56", "peer@1:4x56", "longrl@2:4x56")]
    model_dir = build_model(tmp_path / "tiny", size="tiny")
    rows = bench.run_jobs(jobs, model_dir, gpus=0, warmup_frames=2, n=N, length=LENGTH)
    bench.add_floors(rows, model_dir, N, matmul=1e11, bandwidth=1e10)
    assert [(r["config"], r["gpus"], r["frames"]) for r in rows] == [
        ("baseline", 1, 4), ("longrl", 1, 4), ("longrl", 1, 6), ("peer", 1, 4), ("longrl", 2, 4)]
    base, once, _, peer, sharded = rows
    assert base["prompt_tokens"] == once["prompt_tokens"] == peer["prompt_tokens"] == sharded["prompt_tokens"]
    # The actor's tower: the baseline's three passes each encode the rows again, longrl encodes once at rollout.
    assert base["vision_tower_calls"] == 3 and once["vision_tower_calls"] == 1 and sharded["vision_tower_calls"] == 1
    # The plain loop: one tower pass in generate, then one per row in each of the old, reference and update passes.
    assert peer["vision_tower_calls"] == 1 + 3 * N
    for row in rows:
        assert 0 < row["response_tokens"] <= N * LENGTH
        assert row["floor_s"] == pytest.approx(sum(row[p + "_floor_s"] for p in bench.PHASES))
    # The engine's samples and the actor's scores come from the same weights; the baseline samples outside the engine.
    for row in (once, sharded):
        assert row["sync_weights_s"] > 0 and row["training/rollout_probs_diff/max"] < 1e-3
    assert "sync_weights_s" not in base and "training/rollout_probs_diff/max" not in base
    # The same samples (seeded by index), so the same work, spread over twice the devices.
    assert sharded["response_tokens"] == once["response_tokens"]
    assert sharded["floor_s"] == pytest.approx(once["floor_s"] / 2)
    report = bench.render("CPU", rows)
    line = next(text for text in report.splitlines() if text.startswith("longrl          1      4"))
    assert f"{base['total_s'] / once['total_s']:.2f}x" in line and f"{peer['total_s'] / once['total_s']:.2f}x" in line
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps({"machine": "CPU", "rows": rows}))
    assert bench.render("CPU", json.loads(saved.read_text())["rows"]) == report
