"""The HF rollout's decode loop as it was before the captured decode step (commit e59ea2f), for side-by-side timing.

``decode_step.py --paths old ...`` swaps :func:`sample_with_shared_prefill` below into ``longrl.workers.rollout.hf``:
a Python loop over the tokens, the decode attention as one scaled-dot-product-attention call with an additive mask
over the whole buffer, and one ``torch.Generator`` per sample drawn from in a Python loop over the rows. Kept verbatim
but for names (its attention is registered as ``longrl_prefix_cache_legacy``) and the return value, which now carries
the log-probs as the current loop returns them. Not used by longrl itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, LogitsProcessor, LogitsProcessorList, PreTrainedModel

from longrl.workers.rollout.decode import DecodeInputs
from longrl.workers.rollout.sampling import sample_seed

ATTENTION_NAME = "longrl_prefix_cache_legacy"


class LegacyPrefixCache:
    """Buffers, mask and step of one rollout call: ``B`` prompts of width ``P`` (``prompt_mask``: their left padding),
    ``n`` samples each, up to ``max_new_tokens`` tokens per sample."""

    def __init__(self, prompt_mask: torch.Tensor, n: int, max_new_tokens: int, group: int, dtype: torch.dtype):
        self.batch, self.prompt_width = prompt_mask.shape
        self.n, self.slot_width, self.group = n, max_new_tokens, group
        self.starts = (prompt_mask == 0).sum(dim=1).tolist()
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.width = self.prompt_width + n * max_new_tokens
        blocked = torch.finfo(dtype).min
        mask = torch.full((self.batch, 1, n * group, self.width), blocked, dtype=dtype, device=prompt_mask.device)
        mask[..., :self.prompt_width].masked_fill_(prompt_mask.bool()[:, None, None, :], 0.0)
        self.mask = mask
        self.step = -1

    def advance(self) -> None:
        self.step += 1
        rows = torch.arange(self.n * self.group, device=self.mask.device)
        self.mask[:, 0, rows, self._columns().repeat_interleave(self.group)] = 0.0

    def _columns(self) -> torch.Tensor:
        return self.prompt_width + torch.arange(self.n, device=self.mask.device) * self.slot_width + self.step

    def prefill(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                scaling: float | None) -> torch.Tensor:
        for store, tensor in ((self.keys, key), (self.values, value)):
            buffer = tensor.new_zeros(*tensor.shape[:2], self.width, tensor.shape[-1])
            buffer[:, :, :self.prompt_width] = tensor
            store[layer] = buffer
        out = torch.zeros_like(query)
        for row, start in enumerate(self.starts):
            out[row, :, start:] = F.scaled_dot_product_attention(
                query[row:row + 1, :, start:], key[row:row + 1, :, start:], value[row:row + 1, :, start:],
                is_causal=True, scale=scaling, enable_gqa=True)[0]
        return out

    def decode(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               scaling: float | None) -> torch.Tensor:
        batch, n, group = self.batch, self.n, self.group
        kv_heads, dim = key.shape[1], key.shape[-1]
        columns = self._columns()
        for store, tensor in ((self.keys, key), (self.values, value)):
            store[layer][:, :, columns] = tensor.view(batch, n, kv_heads, dim).transpose(1, 2)
        folded = query.view(batch, n, kv_heads, group, dim).permute(0, 2, 1, 3, 4).reshape(
            batch, kv_heads, n * group, dim)
        out = F.scaled_dot_product_attention(folded, self.keys[layer], self.values[layer], attn_mask=self.mask,
                                             scale=scaling)
        return out.view(batch, kv_heads, n, group, dim).permute(0, 2, 1, 3, 4).reshape(
            batch * n, kv_heads * group, 1, dim)


def _legacy_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                      shared_decode: LegacyPrefixCache | None = None, **_: Any) -> tuple[torch.Tensor, None]:
    run = shared_decode.prefill if shared_decode.step < 0 else shared_decode.decode
    return run(module.layer_idx, query, key, value, scaling).transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION_NAME, _legacy_attention)


@contextmanager
def _legacy_attention_on(model: PreTrainedModel) -> Iterator[None]:
    config = model.config.get_text_config()
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = previous


class _ChosenTokenLogProbs(LogitsProcessor):
    """Records ``log_softmax(raw_logits / T)`` of each step's chosen token; leaves the scores unchanged."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self._pending: torch.Tensor | None = None
        self._chosen: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._pending is not None:
            self._take(input_ids[:, -1])
        self._pending = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def _take(self, tokens: torch.Tensor) -> None:
        self._chosen.append(self._pending.gather(-1, tokens.unsqueeze(-1)).squeeze(-1))
        self._pending = None

    def chosen(self, generated: torch.Tensor) -> torch.Tensor:
        if self._pending is not None:
            self._take(generated[:, -1])
        if not self._chosen:
            return generated.new_zeros(generated.shape, dtype=torch.float)
        return torch.stack(self._chosen, dim=1)


class _Sampler:
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


@torch.no_grad()
def sample_with_shared_prefill(model: PreTrainedModel, inputs: DecodeInputs, processors: LogitsProcessorList, *,
                               n: int, first_sample: int, max_new_tokens: int, greedy: bool,
                               eos_token_ids: tuple[int, ...], pad_token_id: int, seed: int | None,
                               log_prob_temperature: float = 1.0, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The old loop behind the current signature: ``(tokens, log-probs)``."""
    recorder = _ChosenTokenLogProbs(log_prob_temperature)
    processors = LogitsProcessorList([recorder, *processors])
    batch, width = inputs.input_ids.shape
    device = inputs.input_ids.device
    text = model.config.get_text_config()
    cache = LegacyPrefixCache(inputs.attention_mask, n, max_new_tokens,
                              text.num_attention_heads // text.num_key_value_heads, inputs.embeds.dtype)
    response_positions = inputs.position_ids[..., width:].repeat_interleave(n, dim=-2)
    sequences = torch.full((batch * n, width + max_new_tokens), pad_token_id, device=device)
    sequences[:, :width] = inputs.input_ids.repeat_interleave(n, dim=0)
    draw = _Sampler(greedy, seed, batch, n, first_sample, device)
    stops = torch.tensor(list(eos_token_ids), device=device)
    running = torch.ones(batch * n, dtype=torch.bool, device=device)
    with _legacy_attention_on(model):
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
    generated = sequences[:, width:width + step + 1]
    return generated, recorder.chosen(generated)
