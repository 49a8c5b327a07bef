"""The training attention's segments as one variable-length causal call (longrl/mrsp/varlen.py): the packing of a
layout, exact outputs and gradients against attention under a dense float64 mask built independently from the
segments' definition (plain causal spans, branches reading a prefix, padding, GQA), and the CUDA kernel path handing
every sequence to one call with the kernel's contract (a CPU stand-in computes it)."""

from __future__ import annotations

import pytest
import torch

from longrl.mrsp import varlen

# Row 0: padding at 0, a prompt 1..4 with two branches 4..6 and 6..9 reading it, padding at 9. Row 1: two packed
# samples 0..3 and 3..8, then padding.
SEGMENTS = ((0, 1, 4), (0, 4, 6, 1, 4), (0, 6, 9, 1, 4), (1, 0, 3), (1, 3, 8))
WIDTH, HEADS, KV_HEADS, DIM = 10, 4, 2, 8


def test_packing_lists_each_sequence_queries_and_keys():
    packing = varlen.pack_segments(SEGMENTS, torch.device("cpu"))
    assert packing.query_rows.tolist() == [0] * 8 + [1] * 8
    assert packing.query_columns.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4, 5, 6, 7]
    assert packing.key_columns.tolist() == [1, 2, 3, 1, 2, 3, 4, 5, 1, 2, 3, 6, 7, 8, 0, 1, 2, 3, 4, 5, 6, 7]
    assert packing.key_rows.tolist() == [0] * 14 + [1] * 8
    assert packing.query_bounds == (0, 3, 5, 8, 11, 16) and packing.key_bounds == (0, 3, 8, 14, 17, 22)
    assert packing.cu_queries.dtype == packing.cu_keys.dtype == torch.int32
    assert packing.cu_keys.tolist() == list(packing.key_bounds)
    assert (packing.longest_queries, packing.longest_keys) == (5, 6)


def _dense_reference(query, key, value, segments):
    """Attention of every position under a boolean mask read off the segments' definition, in float64."""
    batch, heads, width, _ = query.shape
    allowed = torch.zeros(batch, width, width, dtype=torch.bool)
    scored = torch.zeros(batch, width, dtype=torch.bool)
    for segment in segments:
        row, start, end = segment[:3]
        for position in range(start, end):
            allowed[row, position, start:position + 1] = True
            if len(segment) == 5:
                allowed[row, position, segment[3]:segment[4]] = True
            scored[row, position] = True
    group = heads // key.shape[1]
    key, value = (x.repeat_interleave(group, dim=1) for x in (key, value))
    scores = (query @ key.transpose(-1, -2)) * query.shape[-1] ** -0.5
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # rows of padding see nothing
    out = (probs @ value).transpose(1, 2)  # (b, s, heads, d)
    return out * scored[..., None, None]


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, heads, WIDTH, DIM, dtype=torch.float64, generator=generator, requires_grad=True)
            for heads in (HEADS, KV_HEADS, KV_HEADS)]


def test_outputs_and_gradients_equal_a_dense_mask():
    inputs = _inputs()
    out = varlen.segments_attention(*inputs, SEGMENTS, scale=None, dropout=0.0)
    reference = _dense_reference(*inputs, SEGMENTS)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
    cotangent = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(out, inputs, cotangent)
    reference_grads = torch.autograd.grad(reference, inputs, cotangent)
    for grad, reference_grad in zip(grads, reference_grads):
        torch.testing.assert_close(grad, reference_grad, rtol=0, atol=1e-12)


def test_no_segments_give_zeros():
    query, key, value = _inputs()
    assert torch.equal(varlen.segments_attention(query, key, value, (), None, 0.0), torch.zeros(2, WIDTH, HEADS, DIM,
                                                                                               dtype=torch.float64))


def test_kernel_path_hands_every_sequence_to_one_call(monkeypatch):
    """Where the kernel serves the call: one call gets the packed ``(total, heads, d)`` tensors, int32 bounds, the
    longest lengths as host ints and the scale; a stand-in computing the kernel's contract (lower-right causal within
    each sequence) gives the other path's outputs and gradients."""
    calls = []

    def stand_in(query, key, value, packing, scale):
        calls.append((query.shape, key.shape, packing.cu_queries.dtype, packing.cu_keys.tolist(),
                      type(packing.longest_keys), scale))
        return varlen._sequence_by_sequence(query, key, value, packing, scale, 0.0)

    inputs = _inputs()
    expected = varlen.segments_attention(*inputs, SEGMENTS, scale=0.5, dropout=0.0)
    monkeypatch.setattr(varlen, "takes_flash_kernel", lambda *args: True)
    monkeypatch.setattr(varlen, "_flash_causal", stand_in)
    out = varlen.segments_attention(*inputs, SEGMENTS, scale=0.5, dropout=0.0)
    assert calls == [((16, HEADS, DIM), (22, KV_HEADS, DIM), torch.int32, [0, 3, 8, 14, 17, 22], int, 0.5)]
    assert torch.equal(out, expected)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_the_kernel_is_asked_with_the_call_dropout(dropout, monkeypatch):
    asked = []
    monkeypatch.setattr(varlen, "takes_flash_kernel", lambda *args: asked.append(args) or False)
    varlen.segments_attention(*_inputs(), SEGMENTS, scale=None, dropout=dropout)
    assert asked == [(torch.device("cpu"), torch.float64, DIM, dropout)]
