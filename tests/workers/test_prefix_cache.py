"""The shared-prompt cache's decode attention (longrl/workers/rollout/prefix_cache.py) against each sample's own
attention, computed here per sample over exactly the keys that sample sees: its prompt's real columns and its own
tokens so far; and the split-and-merge of the prompt part (longrl/workers/rollout/split_attention.py) against one
attention call over the whole prompt."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from longrl.workers.rollout.prefix_cache import PrefixCache
from longrl.workers.rollout.split_attention import plan_splits, split_attention

BATCH, PROMPT, N, STEPS, KV_HEADS, GROUP, DIM = 2, 9, 3, 5, 2, 3, 8


def _run(dtype: torch.dtype, starts: tuple[int, ...], pieces: int | None) -> None:
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    mask = torch.ones(BATCH, PROMPT, dtype=torch.long)
    for row, start in enumerate(starts):
        mask[row, :start] = 0
    cache = PrefixCache(mask, N, STEPS, GROUP, dtype, pieces=pieces)
    heads = KV_HEADS * GROUP
    prompt_keys, prompt_values = rand(BATCH, KV_HEADS, PROMPT, DIM), rand(BATCH, KV_HEADS, PROMPT, DIM)
    cache.prefill(0, rand(BATCH, heads, PROMPT, DIM).to(dtype), prompt_keys.to(dtype), prompt_values.to(dtype), None)
    own_keys, own_values = [], []
    for _ in range(STEPS):
        cache.advance()
        query, key, value = rand(BATCH * N, heads, 1, DIM), rand(BATCH * N, KV_HEADS, 1, DIM), rand(
            BATCH * N, KV_HEADS, 1, DIM)
        own_keys.append(key)
        own_values.append(value)
        got = cache.decode(0, query.to(dtype), key.to(dtype), value.to(dtype), None)
        assert got.shape == (BATCH * N, heads, 1, DIM) and got.dtype == dtype
        for row in range(BATCH * N):
            prompt, start = row // N, starts[row // N]
            keys = torch.cat([prompt_keys[prompt, :, start:], torch.cat([k[row] for k in own_keys], dim=1)], dim=1)
            values = torch.cat([prompt_values[prompt, :, start:], torch.cat([v[row] for v in own_values], dim=1)],
                               dim=1)
            expected = F.scaled_dot_product_attention(query[row][None], keys[None], values[None],
                                                      enable_gqa=True)[0]
            tolerance = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 3e-2}[dtype]
            torch.testing.assert_close(got[row].double(), expected, atol=tolerance, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("starts", [(0, 0), (3, 0), (2, 5)])
@pytest.mark.parametrize("pieces", [None, 3])
def test_decode_equals_each_samples_attention_over_what_it_sees(dtype, starts, pieces):
    _run(dtype, starts, pieces)


def test_pieces_cover_each_prompt_in_order_and_are_never_empty():
    lengths = [7, 12, 5]
    splits = plan_splits(lengths, queries=4, kv_heads=2, device=torch.device("cpu"), count=6)
    assert splits.count == 5  # the shortest prompt has 5 keys
    sizes = [end - start for start, end in zip(splits.bounds, splits.bounds[1:])]
    assert min(sizes) >= 1 and splits.longest == max(sizes) == 3
    assert [sum(sizes[b * 5:(b + 1) * 5]) for b in range(3)] == lengths
    assert splits.cu_keys.tolist() == list(splits.bounds) and splits.cu_queries.tolist() == list(range(0, 64, 4))
    assert plan_splits([70_000], 64, 2, torch.device("cpu")).count == 1  # one piece off CUDA unless asked


@pytest.mark.parametrize("count", [1, 2, 7])
def test_split_attention_equals_one_call_over_each_whole_prompt(count):
    generator = torch.Generator().manual_seed(3)
    lengths, rows, kv_heads, dim, scale = [9, 16], 6, 2, 8, 0.3
    query = torch.randn(len(lengths), rows, kv_heads, dim, generator=generator, dtype=torch.float64)
    keys = torch.randn(sum(lengths), kv_heads, dim, generator=generator, dtype=torch.float64)
    values = torch.randn(sum(lengths), kv_heads, dim, generator=generator, dtype=torch.float64)
    splits = plan_splits(lengths, rows, kv_heads, torch.device("cpu"), count)
    out, lse = split_attention(query, keys, values, splits, scale, use_flash=False)
    offset = 0
    for prompt, length in enumerate(lengths):
        k, v = keys[offset:offset + length].transpose(0, 1), values[offset:offset + length].transpose(0, 1)
        scores = query[prompt].transpose(0, 1) @ k.transpose(1, 2) * scale  # (kv, rows, length)
        torch.testing.assert_close(lse[prompt], torch.logsumexp(scores, -1).T, atol=1e-12, rtol=0)
        torch.testing.assert_close(out[prompt], (torch.softmax(scores, -1) @ v).transpose(0, 1), atol=1e-12, rtol=0)
        offset += length
