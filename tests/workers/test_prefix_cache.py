"""The shared-prompt cache's decode attention (longrl/workers/rollout/prefix_cache.py) against each sample's own
attention, computed here per sample over exactly the keys that sample sees: its prompt's real columns and its own
tokens so far."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from longrl.workers.rollout.prefix_cache import PrefixCache, _chunking, chunked_weighted_sum

BATCH, PROMPT, N, STEPS, KV_HEADS, GROUP, DIM = 2, 9, 3, 5, 2, 3, 8


def _run(dtype: torch.dtype, starts: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    mask = torch.ones(BATCH, PROMPT, dtype=torch.long)
    for row, start in enumerate(starts):
        mask[row, :start] = 0
    cache = PrefixCache(mask, N, STEPS, GROUP, dtype)
    assert cache.width % cache.chunk == 0 and cache.width >= PROMPT + N * STEPS
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
def test_decode_equals_each_samples_attention_over_what_it_sees(dtype, starts):
    _run(dtype, starts)


def test_chunking_covers_the_columns_in_at_most_128_aligned_chunks():
    for columns in (1, 63, 64, 65, 1000, 8221 + 8 * 512, 65_565 + 8 * 512, 259_229 + 4 * 1024):
        chunk, chunks = _chunking(columns)
        assert chunk % 64 == 0 and chunks <= 128 and (chunks - 1) * chunk < columns <= chunks * chunk


def test_chunked_weighted_sum_equals_one_matmul():
    generator = torch.Generator().manual_seed(2)
    probs = torch.rand(3, 5, 6 * 64, generator=generator, dtype=torch.float64)
    values = torch.randn(3, 6 * 64, 7, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(chunked_weighted_sum(probs, values, 64), probs @ values, atol=1e-12, rtol=0)
