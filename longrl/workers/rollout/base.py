"""The interface every rollout engine (Hugging Face generate, vLLM) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Union

import torch

from longrl.protocol import Batch
from longrl.workers.rollout.sampling import SamplingParams

__all__ = ["RolloutEngine", "SamplingParams", "WeightsLike"]

# Weights as the actor hands them over: a state dict, or a stream of (name, tensor) pairs so that an engine that
# loads tensor by tensor never needs the whole unsharded model in memory at once. Names are the HF model's own.
WeightsLike = Union[Mapping[str, torch.Tensor], Iterable[tuple[str, torch.Tensor]]]


class RolloutEngine(ABC):
    """Generates ``n`` responses per prompt and takes weight updates from the actor.

    Input: a prompt batch with ``input_ids``/``attention_mask`` (left-padded), optional ``mm_token_type_ids``,
    and non-tensors ``uid`` and ``vision_inputs`` (per row a dict of vision tensors, ``{}`` for text-only).
    Output: see :func:`longrl.workers.rollout.output.build_rollout_batch` for the exact layout (``B * n``
    rows, a prompt's samples contiguous).
    """

    @abstractmethod
    def generate(self, prompts: Batch, sampling: SamplingParams) -> Batch:
        """``sampling.n`` responses for every prompt row, laid out interleaved (row ``i`` -> rows
        ``i*n .. i*n+n-1``)."""

    @abstractmethod
    def load_weights(self, weights: WeightsLike) -> None:
        """Replace the engine's weights; names are the Hugging Face model's own ``state_dict`` names."""

    def release(self) -> None:
        """Give the engine's accelerator memory (KV cache, weights) back while the actor trains; a no-op where the
        engine or the platform cannot. The next :meth:`resume` restores it."""

    def resume(self) -> None:
        """Undo :meth:`release` (a no-op when the engine is not released)."""
