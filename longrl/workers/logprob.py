"""Log-probabilities (and entropy) of response tokens only.

A long video prompt has tens of thousands of positions and a vocabulary of ~150k: full logits over the prompt
would dwarf everything else in memory. The model runs over prompt + response with ``logits_to_keep`` so its LM
head is applied only to the last ``R + 1`` positions. Prompts are left-padded to a common width ``P`` and
responses right-padded to ``R``, so the state at column ``P - 1 + j`` predicts response token ``j`` in every row.
The whole model's forward is called (not its submodules) so FSDP's unshard hooks run as they should.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from longrl.algos.entropy import entropy_from_logits
from longrl.protocol import TOKEN_KEYS


@dataclass
class ResponseScores:
    log_probs: torch.Tensor  # (b, R) float32
    entropy: torch.Tensor | None  # (b, R) float32 when asked for


def response_log_probs(
    model: torch.nn.Module,
    tokens: dict[str, torch.Tensor],
    forward_kwargs: dict[str, Any],
    responses: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> ResponseScores:
    """Score ``responses`` (b, R) under ``model`` given prompt+response ``tokens`` (b, P + R).

    ``forward_kwargs`` carry the vision side: pixel values (the forward runs the tower) or precomputed features
    (the family's ``encoder_kwargs``) plus the grids the mrope positions are computed from.

    ``model`` is a Hugging Face ``*ForCausalLM`` / ``*ForConditionalGeneration`` (or an FSDP-sharded one). Logits
    are divided by the rollout ``temperature`` so the scores are those of the distribution the rollout sampled from.
    """
    response_width = responses.shape[1]
    inputs: dict[str, Any] = {key: tokens[key] for key in TOKEN_KEYS if key in tokens}
    output = model(**inputs, **forward_kwargs, use_cache=False, logits_to_keep=response_width + 1)
    logits = output.logits[:, :-1].float()
    if temperature > 0:
        logits = logits / temperature
    log_probs = torch.log_softmax(logits, dim=-1).gather(-1, responses.unsqueeze(-1)).squeeze(-1)
    return ResponseScores(log_probs, entropy_from_logits(logits) if with_entropy else None)
