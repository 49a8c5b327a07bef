"""transformers' hub kernels stay off unless a run asks for them.

From 5.2x, transformers swaps layers for kernels it downloads from the Hugging Face hub whenever a model is loaded on
CUDA, unless ``USE_HUB_KERNELS`` says no; without internet (the usual cluster) every ``from_pretrained`` then fails.
longrl turns them off when imported (an exported ``USE_HUB_KERNELS`` is respected), and a training run sets the
variable from ``worker.actor.model.use_hub_kernels`` in each worker before it loads a model.
"""

from __future__ import annotations

import os

__all__ = ["HUB_KERNELS_ENV", "default_hub_kernels_off", "use_hub_kernels"]

HUB_KERNELS_ENV = "USE_HUB_KERNELS"


def default_hub_kernels_off() -> None:
    """Off unless the environment already says otherwise."""
    os.environ.setdefault(HUB_KERNELS_ENV, "NO")


def use_hub_kernels(enabled: bool) -> None:
    """Let this process's later model loads fetch hub kernels (``enabled``) or not."""
    os.environ[HUB_KERNELS_ENV] = "YES" if enabled else "NO"
