"""Expandable segments for the CUDA caching allocator of a worker whose rollout runs on the HF engine.

A step allocates blocks of very different sizes phase after phase (a 65k-token prefill, the captured decode step's
pool, the update's activations); with fixed segments an 80 GB card ends the 512-frame workload step with GiB reserved
but unusable, and the step fails (benchmarks/README.md). Expandable segments remove that fragmentation. vLLM's sleep
mode allocates through its own memory pool and refuses the setting, and a user's own allocator configuration always
wins, so neither is touched. The setting is made through the allocator's runtime call rather than the environment,
which the allocator may already have read by the time a worker runs.
"""

from __future__ import annotations

import os
from typing import Mapping

import torch

ALLOC_CONF_VARIABLES = ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")  # torch's name, then its older alias
EXPANDABLE = "expandable_segments:True"


def wants_expandable_segments(rollout_engine: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a worker with ``rollout_engine`` should ask for expandable segments: not under vLLM, and not when the
    user configured the allocator."""
    return rollout_engine != "vllm" and not any(name in environ for name in ALLOC_CONF_VARIABLES)


def prefer_expandable_segments(rollout_engine: str) -> bool:
    """Ask this process's CUDA allocator for expandable segments where :func:`wants_expandable_segments` says so;
    True when the setting was made (never without CUDA)."""
    if not (torch.cuda.is_available() and wants_expandable_segments(rollout_engine)):
        return False
    # Newer torch names the call for every accelerator and deprecates the CUDA one (a FutureWarning per worker).
    set_settings = getattr(torch._C, "_accelerator_setAllocatorSettings", None)
    (set_settings or torch.cuda.memory._set_allocator_settings)(EXPANDABLE)
    return True
