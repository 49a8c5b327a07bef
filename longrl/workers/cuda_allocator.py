"""Expandable segments for the CUDA caching allocator of a worker whose rollout runs on the HF engine.

A step allocates blocks of very different sizes phase after phase (a 65k-token prefill, the captured decode step's
pool, the update's activations); with fixed segments an 80 GB card ends the 512-frame workload step with tens of GiB
reserved but unusable, and the step fails (benchmarks/README.md). Expandable segments remove that fragmentation.
vLLM's sleep mode allocates through its own memory pool and refuses the setting, and a user's own
``PYTORCH_CUDA_ALLOC_CONF`` always wins, so neither is touched.
"""

from __future__ import annotations

import os
from typing import MutableMapping

import torch

ALLOC_CONF = "PYTORCH_CUDA_ALLOC_CONF"
EXPANDABLE = "expandable_segments:True"


def prefer_expandable_segments(rollout_engine: str, environ: MutableMapping[str, str] = os.environ) -> bool:
    """Ask for expandable segments before this process first touches CUDA; True when the setting was made.

    The allocator reads its configuration once, when CUDA is first used, so this is called before any tensor or
    process group of the worker exists."""
    if rollout_engine == "vllm" or ALLOC_CONF in environ or torch.cuda.is_initialized():
        return False
    environ[ALLOC_CONF] = EXPANDABLE
    return True
