"""benchmarks/decode_step.py on a CPU with the tiny model: the eager and captured paths run on the same engine and
prompt and print their time per step, the ratio and their profiles' summaries (the compiled path, a second engine, is the GPU run's: compiling
on a CPU takes longer than the rest of this test)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import longrl  # noqa: F401  (before transformers: the CPU torchvision shim)

sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))  # after tests/: see test_mrsp_bench.py
import decode_step  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

pytestmark = pytest.mark.slow


def test_each_path_prints_its_time_per_step_and_the_ratio(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["decode_step.py", "--model", "tiny", "--frames", "2", "--short", "2",
                                      "--long", "4", "--n", "2", "--paths", "eager", "graphs", "--profile"])
    decode_step.main()
    lines = capsys.readouterr().out.splitlines()
    for path in ("eager", "graphs"):
        assert any(f", {path}: " in line and "ms per decoding step" in line for line in lines), lines
    assert any("time per step, eager / graphs " in line for line in lines), lines
    # Each path's profile covers the long call's 3 decoding steps (its first token comes from the prefill).
    for path in ("eager", "graphs"):
        header = lines.index(f"frames 2, {path}, profile:")
        assert lines[header + 1].startswith("per decoding step (3 steps profiled): "), lines[header + 1]


def test_profile_counts_operators_per_step_and_lists_them():
    """The summary divides what ran by the steps: four "steps" of three known top-level operators each."""
    from torch.profiler import ProfilerActivity, profile

    a = torch.ones(4, 4)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(4):
            torch.mm(torch.add(a, 1), torch.relu(a))
    summary = decode_step.kernel_summary(profiler.events(), steps=4, gpu=False)
    assert summary.startswith("per decoding step (4 steps profiled): 3.0 top-level operators, "), summary
    rows = {line.split()[-1]: line.split()[0] for line in summary.splitlines()[2:]}
    assert rows == {"aten::add": "1.0", "aten::relu": "1.0", "aten::mm": "1.0"}
