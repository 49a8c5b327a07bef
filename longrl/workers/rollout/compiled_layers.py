"""The language model's decoder layers through ``torch.compile`` while the HF engine decodes.

A decode step feeds one token per sample: every matmul reads its weights for a handful of rows, so the step is bound
by memory traffic and by the number of kernels. Run eagerly, a transformers decoder layer is some forty kernels
(norms as five elementwise passes, rotary embeddings, bias adds, the gated MLP's activation and product, residual
adds), each a few microseconds even inside a CUDA graph: over 36 layers that is more time than reading the weights.
Compiled, the elementwise chains fuse into a few kernels per layer.

Only decoding goes through the compiled forward (the prefill's shapes change with every prompt and it is bound by
arithmetic); the prompt cache's attention is left out of the layers' graphs (:func:`torch.compiler.disable` on it),
so a graph's shapes do not depend on the prompt length and one compilation serves every call with the same number of
samples. Every layer runs the same code, so one compilation serves all of them. The attention compiles its own part
after its prompt-length kernel the same way (:class:`CompiledOrEager`): the merge of the pieces and of each sample's
own tokens, some forty small kernels a layer run eagerly (rollout/prefix_cache.py).

The compiled kernels round to 16 bits where the eager code casts (``emulate_precision_casts``: a fused kernel would
otherwise keep, say, an RMSNorm's float32 result unrounded before the weight multiplies it), so a bf16 model decodes
close to what its eager layers, and the actor, compute; float32 arithmetic itself differs in the last bits (fused
reductions, vectorised ``rsqrt``), which is why only 16-bit engines compile by default. A compilation that fails is
logged once and that part decodes eagerly from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import PreTrainedModel

__all__ = ["CompiledOrEager", "compile_decode_layers", "decodes_compiled"]

logger = logging.getLogger(__name__)


def compile_decode_layers(model: PreTrainedModel) -> None:
    """Route each decoder layer of ``model``'s language model through its compiled forward while decoding (a model
    without ``get_decoder().layers`` is left eager, and says so)."""
    layers = _decoder_layers(model)
    if not layers:
        logger.warning("HF rollout: %s has no decoder layers to compile; decoding eagerly", type(model).__name__)
    for layer in layers:
        layer.forward = _CompiledWhileDecoding(layer.forward)


def decodes_compiled(model: PreTrainedModel) -> bool:
    """Whether ``model`` decodes through compiled layers (:func:`compile_decode_layers`, none of them failed): the
    decode step then compiles the prompt cache's attention around its prompt-length kernel too."""
    layers = _decoder_layers(model)
    return (bool(layers) and all(isinstance(layer.forward, _CompiledWhileDecoding) for layer in layers)
            and _CompiledWhileDecoding.PART not in CompiledOrEager.failed_parts)


def _decoder_layers(model: PreTrainedModel) -> Sequence[torch.nn.Module]:
    """The language model's decoder layers, empty for a model that does not name them (e.g. VILA's wrapper, which
    has no ``get_decoder``)."""
    get_decoder = getattr(model, "get_decoder", None)
    return (getattr(get_decoder(), "layers", None) if get_decoder is not None else None) or ()


class CompiledOrEager:
    """``eager`` through ``torch.compile``. A compilation that fails is logged once, and every wrapper of the same
    ``part`` of the decode step runs eagerly from then on: the eager function is the same computation."""

    failed_parts: set[str] = set()

    def __init__(self, eager: Callable[..., Any], part: str):
        self.eager, self.part = eager, part
        self.compiled = torch.compile(eager, options={"emulate_precision_casts": True})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.part in CompiledOrEager.failed_parts:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001  (the eager function is the same computation)
            logger.warning("HF rollout: compiling %s failed (%s: %s); running it eagerly", self.part,
                           type(error).__name__, error)
            CompiledOrEager.failed_parts.add(self.part)
            return self.eager(*args, **kwargs)


class _CompiledWhileDecoding(CompiledOrEager):
    """A layer's forward: the compiled one when the forward's ``shared_decode`` cache is decoding, else the eager one."""

    PART = "the decode step's layers"

    def __init__(self, eager: Callable[..., Any]):
        super().__init__(eager, self.PART)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        cache = kwargs.get("shared_decode")
        if cache is None or not cache.decoding:
            return self.eager(*args, **kwargs)
        return super().__call__(*args, **kwargs)
