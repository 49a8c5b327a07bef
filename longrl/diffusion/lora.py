"""LoRA on a flow transformer, through diffusers' PEFT integration (``worker.actor.lora.rank > 0``).

The adapters start as the identity (their B matrices are zero), so the model with its adapters disabled *is* the
reference: the KL term costs no second copy of the weights, which is what makes LoRA the practical choice for the
released SD3 / Wan sizes. Only the adapter weights train; checkpoints keep only them (the base is the model directory).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

__all__ = ["add_lora", "adapters_disabled"]


def add_lora(model: torch.nn.Module, rank: int, alpha: float, target_modules: Sequence[str]) -> None:
    """Add one LoRA adapter of ``rank`` (scale ``alpha / rank``) to the ``target_modules`` of ``model``; afterwards
    only the adapter weights require gradients. Raises naming the key when no module matches."""
    from peft import LoraConfig  # imported here: a full fine-tune does not need peft

    try:
        model.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(target_modules)))
    except ValueError as exc:
        raise ValueError(f"worker.actor.lora.target_modules={list(target_modules)} matches no module of "
                         f"{type(model).__name__}: {exc}") from exc


@contextmanager
def adapters_disabled(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` as its base (the reference) inside the block; the adapters are back on afterwards."""
    model.disable_adapters()
    try:
        yield
    finally:
        model.enable_adapters()
