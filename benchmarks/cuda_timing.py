"""Timing a piece of GPU work on the GPU's own clock, for the CUDA check scripts."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch


def median_ms(run: Callable[[], object], repeats: int = 3) -> float:
    """Median time of ``run`` in milliseconds, between CUDA events, after one warm-up."""
    run()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)
