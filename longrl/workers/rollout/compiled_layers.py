"""The language model's decoder layers through ``torch.compile`` while the HF engine decodes.

A decode step feeds one token per sample: every matmul reads its weights for a handful of rows, so the step is bound
by memory traffic and by the number of kernels. Run eagerly, a transformers decoder layer is some forty kernels
(norms as five elementwise passes, rotary embeddings, bias adds, the gated MLP's activation and product, residual
adds), each a few microseconds even inside a CUDA graph: over 36 layers that is more time than reading the weights.
Compiled, the elementwise chains fuse into a few kernels per layer.

Only decoding goes through the compiled forward (the prefill's shapes change with every prompt and it is bound by
arithmetic); the prompt cache's attention is left out of the compiled graphs
(:func:`torch.compiler.disable` on it), so a graph's shapes do not depend on the prompt length and one compilation
serves every call with the same number of samples. Every layer runs the same code, so one compilation serves all of
them. The compiled kernels round to 16 bits where the eager code casts (``emulate_precision_casts``: a fused
kernel would otherwise keep, say, an RMSNorm's float32 result unrounded before the weight multiplies it), so a
bf16 model decodes close to what its eager layers, and the actor, compute; float32 arithmetic itself differs in the
last bits (fused reductions, vectorised ``rsqrt``), which is why only 16-bit engines compile by default. A compilation
that fails is logged once and the layers decode eagerly from then on.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from transformers import PreTrainedModel

__all__ = ["compile_decode_layers"]

logger = logging.getLogger(__name__)


def compile_decode_layers(model: PreTrainedModel) -> None:
    """Route each decoder layer of ``model``'s language model through its compiled forward while decoding (a model
    without ``get_decoder().layers`` is left eager, and says so)."""
    layers = getattr(model.get_decoder(), "layers", None)
    if not layers:
        logger.warning("HF rollout: %s has no decoder layers to compile; decoding eagerly", type(model).__name__)
    for layer in layers or ():
        layer.forward = _CompiledWhileDecoding(layer.forward)


class _CompiledWhileDecoding:
    """A layer's forward: the compiled one when the forward's ``shared_decode`` cache is decoding, else the eager one."""

    failed = False  # one failed compilation turns compiling off for every layer

    def __init__(self, eager: Callable[..., Any]):
        self.eager = eager
        self.compiled = torch.compile(eager, options={"emulate_precision_casts": True})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        cache = kwargs.get("shared_decode")
        if cache is None or not cache.decoding or _CompiledWhileDecoding.failed:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001  (the eager forward is the same computation)
            logger.warning("HF rollout: compiling the decode step's layers failed (%s: %s); decoding eagerly",
                           type(error).__name__, error)
            _CompiledWhileDecoding.failed = True
            return self.eager(*args, **kwargs)
