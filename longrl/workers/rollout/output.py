"""Raw generated tokens -> the rollout batch layout shared by every engine and read by the actor.

Layout for ``B`` prompts of width ``P`` and ``n`` samples each (``B * n`` rows, prompt row ``i``'s samples
at rows ``i*n .. i*n+n-1``), ``R`` = the response budget (``max_new_tokens``), so that the outputs of several
data-parallel ranks (whose longest responses differ) concatenate without re-padding:

* ``prompts`` (B*n, P): the left-padded prompt ids; ``responses`` (B*n, R): right-padded with the pad id;
* ``response_mask`` (B*n, R): 1 on response tokens up to and including the EOS token that ended it;
* ``input_ids`` / ``attention_mask`` (B*n, P+R): prompt and response joined, so positions run on;
* ``mm_token_type_ids`` (B*n, P+R), when the prompts have it: zeros over the response;
* ``rollout_log_probs`` (B*n, R): log-prob of each chosen token under ``log_softmax(logits / T)`` (``T = 1``
  for greedy), zero outside ``response_mask``;
* every other prompt field (``uid``, ``vision_inputs``, answers, ...) repeated per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from longrl.protocol import (
    ATTENTION_MASK,
    INPUT_IDS,
    MM_TOKEN_TYPE_IDS,
    PROMPTS,
    RESPONSE_MASK,
    RESPONSES,
    ROLLOUT_LOG_PROBS,
    TOKEN_KEYS,
    Batch,
)

__all__ = ["align_prompt_width", "build_rollout_batch", "response_mask_from_eos"]


def response_mask_from_eos(tokens: torch.Tensor, eos_token_ids: Sequence[int]) -> torch.Tensor:
    """1 up to and including the first EOS of each row, 0 after it (a row without EOS is all 1).

    Needed because engines pad finished rows with the pad id, which may itself be an EOS id.
    """
    is_eos = torch.isin(tokens, torch.tensor(list(eos_token_ids), device=tokens.device))
    eos_before = torch.cumsum(is_eos.long(), dim=-1) - is_eos.long()
    return (eos_before == 0).long()


def build_rollout_batch(
    prompts: Batch,
    n: int,
    generated: torch.Tensor,
    log_probs: torch.Tensor,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    response_width: int,
) -> Batch:
    """Assemble the rollout batch from ``generated`` (B*n, L <= response_width) tokens and their ``log_probs``."""
    total = len(prompts) * n
    if generated.shape[0] != total or log_probs.shape != generated.shape:
        raise ValueError(
            f"expected generated tokens and log-probs of shape ({total}, L) for {len(prompts)} prompts x n={n}, "
            f"got {tuple(generated.shape)} and {tuple(log_probs.shape)}"
        )
    if generated.shape[1] > response_width:
        raise ValueError(f"generated {generated.shape[1]} tokens, more than the response width {response_width}")
    fill = response_width - generated.shape[1]
    generated = torch.nn.functional.pad(generated, (0, fill), value=pad_token_id)
    log_probs = torch.nn.functional.pad(log_probs, (0, fill))
    mask = response_mask_from_eos(generated, eos_token_ids)
    width = response_width
    responses = torch.where(mask.bool(), generated[:, :width], torch.full_like(generated[:, :width], pad_token_id))
    repeated = prompts.repeat(n, interleave=True)
    prompt_ids, prompt_mask = repeated.tensors[INPUT_IDS], repeated.tensors[ATTENTION_MASK]
    outputs = {
        PROMPTS: prompt_ids,
        RESPONSES: responses,
        RESPONSE_MASK: mask.to(prompt_mask.dtype),
        INPUT_IDS: torch.cat([prompt_ids, responses.to(prompt_ids.dtype)], dim=-1),
        ATTENTION_MASK: torch.cat([prompt_mask, mask.to(prompt_mask.dtype)], dim=-1),
        ROLLOUT_LOG_PROBS: torch.where(mask.bool(), log_probs[:, :width].float(), 0.0),
    }
    if MM_TOKEN_TYPE_IDS in repeated.tensors.keys():
        types = repeated.tensors[MM_TOKEN_TYPE_IDS]
        outputs[MM_TOKEN_TYPE_IDS] = torch.cat([types, types.new_zeros(total, width)], dim=-1)
    carried = {key: value for key, value in repeated.tensors.items() if key not in outputs}
    return Batch.from_dict({**carried, **outputs}, repeated.non_tensors, repeated.meta, batch_size=total)


def align_prompt_width(batches: Sequence[Batch], pad_token_id: int) -> list[Batch]:
    """Left-pad the prompt columns of rollout batches drawn separately (different prompt widths) to one width,
    so they concatenate; empty batches are dropped. Responses already share the width ``R``."""
    batches = [batch for batch in batches if len(batch)]
    width = max(batch.tensors[PROMPTS].shape[1] for batch in batches)
    aligned = []
    for batch in batches:
        fill = width - batch.tensors[PROMPTS].shape[1]
        if fill == 0:
            aligned.append(batch)
            continue
        response_width = batch.tensors[RESPONSES].shape[1]
        padded = {PROMPTS: torch.nn.functional.pad(batch.tensors[PROMPTS], (fill, 0), value=pad_token_id)}
        for key in TOKEN_KEYS:
            if key in batch.tensors.keys():
                value = 0 if key != INPUT_IDS else pad_token_id
                prompt_part = batch.tensors[key][:, : batch.tensors[key].shape[1] - response_width]
                padded[key] = torch.cat([torch.nn.functional.pad(prompt_part, (fill, 0), value=value),
                                         batch.tensors[key][:, prompt_part.shape[1]:]], dim=-1)
        rest = {key: value for key, value in batch.tensors.items() if key not in padded}
        aligned.append(Batch.from_dict({**rest, **padded}, batch.non_tensors, batch.meta, batch_size=len(batch)))
    return aligned
