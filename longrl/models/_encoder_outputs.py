"""Precomputed encoder features written over their placeholder tokens, the same way in every transformers 5.x.

MR-SP and the rollout run the vision (and audio) towers once and hand the features to each later forward as
``mm_encoder_outputs`` (``{"image" | "video" | "audio": BaseModelOutputWithPooling}``, ``pooler_output`` holding
``(tokens, hidden)`` tensors in placeholder order). transformers takes that keyword for Qwen-VL only from 5.18 and
ignores it silently before (the placeholders then keep their token embeddings: wrong log-probs, no error), so the
families splice the features into ``inputs_embeds`` themselves and call the stock forward without the keyword.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

__all__ = ["accept_encoder_outputs", "splice_encoder_outputs"]


def splice_encoder_outputs(module: torch.nn.Module, input_ids: torch.Tensor, inputs_embeds: torch.Tensor | None,
                           outputs: Mapping[str, BaseModelOutputWithPooling],
                           placeholder_ids: Mapping[str, int]) -> torch.Tensor:
    """``inputs_embeds`` (``module``'s token embeddings of ``input_ids`` when None) with each kind's features written
    over the tokens ``placeholder_ids[kind]``. Every given kind is written, even with no placeholder here, so its
    features stay in this forward's autograd graph (MR-SP's all-gather backward runs on every rank)."""
    if inputs_embeds is None:
        inputs_embeds = module.get_input_embeddings()(input_ids)
    for kind, output in outputs.items():
        placeholders = (input_ids == placeholder_ids[kind]).unsqueeze(-1)
        features = torch.cat(list(output.pooler_output)).to(inputs_embeds.device, inputs_embeds.dtype)
        if int(placeholders.sum()) != features.shape[0]:
            raise ValueError(f"the input holds {int(placeholders.sum())} {kind} placeholder tokens but "
                             f"{features.shape[0]} {kind} features were given")
        inputs_embeds = inputs_embeds.masked_scatter(placeholders, features)
    return inputs_embeds


def accept_encoder_outputs(module: torch.nn.Module, placeholder_ids: Mapping[str, int]) -> None:
    """Make ``module``'s forward take ``mm_encoder_outputs`` of the kinds in ``placeholder_ids`` by splicing them."""
    stock_forward = module.forward

    def forward(input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                mm_encoder_outputs: Mapping[str, BaseModelOutputWithPooling] | None = None, **kwargs: Any) -> Any:
        if mm_encoder_outputs:
            inputs_embeds = splice_encoder_outputs(module, input_ids, inputs_embeds, mm_encoder_outputs,
                                                   placeholder_ids)
        return stock_forward(input_ids=input_ids, inputs_embeds=inputs_embeds, **kwargs)

    module.forward = forward
