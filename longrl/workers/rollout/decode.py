"""Sampling ``n`` responses per prompt with each prompt prefilled once and its cache shared by the samples.

``generate`` takes a batch of whole sequences, so ``n`` samples of a prompt cost ``n`` prefills of it, ``n`` copies of
its key/value cache, and ``n`` reads of that cache per generated token. For a long video prompt these are the rollout:
eight prefills of a 259k-token prompt take minutes and do not fit one GPU. Here the ``B`` prompts are prefilled once,
their keys and values kept once per prompt (:mod:`longrl.workers.rollout.prefix_cache`), and decoding goes on token by
token with the step rule of ``generate``'s sampling loop: processors on float32 logits, softmax, one draw per row,
finished rows padded, stop when every row has stopped.

Each sample draws from its own random stream, seeded from ``(seed, prompt, sample index)`` (:func:`sample_seed`):
a sample does not depend on which other samples share its batch, so the ``n`` samples of a prompt can be split over
the ranks of a sequence-parallel group and still be the samples one rank would have drawn alone.

Positions come from the model family's adapter over prompt + response columns (what the actor's forward uses), so
rollout and actor score every token at the same positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList, PreTrainedModel

from longrl.workers.rollout.prefix_cache import PrefixCache, prefix_cache_attention_on
from longrl.workers.rollout.sampling import sample_seed

__all__ = ["DecodeInputs", "sample_with_shared_prefill"]


@dataclass
class DecodeInputs:
    """What the loop needs of ``B`` left-padded prompts of width ``P``."""

    embeds: torch.Tensor  # (B, P, hidden): text embeddings with the vision features spliced in
    input_ids: torch.Tensor  # (B, P)
    attention_mask: torch.Tensor  # (B, P)
    position_ids: torch.Tensor  # (B, P + max_new_tokens) or (k, B, P + max_new_tokens) for mrope


@torch.no_grad()
def sample_with_shared_prefill(
    model: PreTrainedModel,
    inputs: DecodeInputs,
    processors: LogitsProcessorList,
    *,
    n: int,
    first_sample: int,
    max_new_tokens: int,
    greedy: bool,
    eos_token_ids: tuple[int, ...],
    pad_token_id: int,
    seed: int | None,
) -> torch.Tensor:
    """``(B * n, steps)`` generated tokens, prompt row ``i``'s samples at rows ``i*n .. i*n+n-1``; these are samples
    ``first_sample .. first_sample+n-1`` of each prompt (their seeds). Rows are padded after their stop token."""
    batch, width = inputs.input_ids.shape
    device = inputs.input_ids.device
    text = model.config.get_text_config()
    cache = PrefixCache(inputs.attention_mask, n, max_new_tokens, text.num_attention_heads // text.num_key_value_heads,
                        inputs.embeds.dtype)
    response_positions = inputs.position_ids[..., width:].repeat_interleave(n, dim=-2)  # (.., B * n, max_new_tokens)
    sequences = torch.full((batch * n, width + max_new_tokens), pad_token_id, device=device)
    sequences[:, :width] = inputs.input_ids.repeat_interleave(n, dim=0)
    draw = _Sampler(greedy, seed, batch, n, first_sample, device)
    stops = torch.tensor(list(eos_token_ids), device=device)
    running = torch.ones(batch * n, dtype=torch.bool, device=device)
    with prefix_cache_attention_on(model):
        logits = model(inputs_embeds=inputs.embeds, position_ids=inputs.position_ids[..., :width], use_cache=False,
                       logits_to_keep=1, shared_decode=cache).logits[:, -1].repeat_interleave(n, dim=0)
        for step in range(max_new_tokens):
            scores = processors(sequences[:, :width + step], logits.float())
            tokens = torch.where(running, draw(scores), pad_token_id)
            sequences[:, width + step] = tokens
            running &= ~torch.isin(tokens, stops)
            if step + 1 == max_new_tokens or not running.any():
                break
            cache.advance()
            logits = model(input_ids=tokens[:, None], position_ids=response_positions[..., step:step + 1],
                           use_cache=False, shared_decode=cache).logits[:, -1]
    return sequences[:, width:width + step + 1]


class _Sampler:
    """One draw per row from softmax(scores): argmax when greedy; else from the row's own seeded stream, or from the
    process's random state when unseeded (one batched draw, as ``generate`` makes)."""

    def __init__(self, greedy: bool, seed: int | None, batch: int, n: int, first_sample: int, device: torch.device):
        self.greedy = greedy
        self.streams = None if greedy or seed is None else [
            torch.Generator(device=device).manual_seed(sample_seed(seed, prompt, first_sample + k))
            for prompt in range(batch) for k in range(n)]

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        if self.greedy:
            return scores.argmax(dim=-1)
        probs = torch.softmax(scores, dim=-1)
        if self.streams is None:
            return torch.multinomial(probs, num_samples=1).squeeze(1)
        return torch.cat([torch.multinomial(row[None], 1, generator=stream)[0]
                          for row, stream in zip(probs, self.streams)])
