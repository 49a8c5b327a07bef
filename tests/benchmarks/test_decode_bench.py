"""benchmarks/decode_step.py on a CPU with the tiny model: the eager and captured paths run on the same engine and
prompt and print their time per step and the ratio (the compiled path, a second engine, is the GPU run's: compiling
on a CPU takes longer than the rest of this test)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import longrl  # noqa: F401  (before transformers: the CPU torchvision shim)

sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))  # after tests/: see test_mrsp_bench.py
import decode_step  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

pytestmark = pytest.mark.slow


def test_each_path_prints_its_time_per_step_and_the_ratio(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["decode_step.py", "--model", "tiny", "--frames", "2", "--short", "2",
                                      "--long", "4", "--n", "2", "--paths", "eager", "graphs"])
    decode_step.main()
    lines = capsys.readouterr().out.splitlines()
    for path in ("eager", "graphs"):
        assert any(f", {path}: " in line and "ms per decoding step" in line for line in lines), lines
    assert any("time per step, eager / graphs " in line for line in lines), lines
