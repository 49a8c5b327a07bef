"""MR-SP stage 2: response log-probs (and entropy) from a sequence-sharded prefill.

The caller hands over full-width rows — a left-padded prompt then a right-padded response, ``(b, P + R)`` — with
their full-sequence position ids (Qwen-VL's 3-D mrope ids must be computed on the whole sequence, before any
sharding) and the video features to splice (computed once per step by stage 1). Here:

1. **Layout.** Padded: the rows as they are, one causal segment per row (its valid span). Padding-free
   (``padding_free``): the valid tokens of all rows packed into one row, one segment per sample (the ``cu_seqlens``
   boundaries), so no compute is spent on padding.
2. **Shard.** The width is right-padded to a multiple of the SP size and each rank keeps one contiguous block of
   columns: its token ids, its position ids, and the video features of the placeholders that fall in its block.
3. **Forward.** The model runs on the local block only; attention is Ulysses (:mod:`longrl.mrsp.attention`). The LM
   head is applied only at the local columns that predict a response token (``logits_to_keep``), so no logits exist
   for prompt positions.
4. **Gather.** Each rank writes its response positions into a zero ``(b, R)`` tensor and the group sums them
   (:func:`~longrl.mrsp.collectives.combine_shards`), which also makes the update's gradients right.

Positions the layout does not score (response padding) come back as 0; callers mask them with ``response_mask``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from longrl.algos.entropy import entropy_from_logits
from longrl.mrsp.attention import AttentionLayout
from longrl.mrsp.collectives import combine_shards
from longrl.mrsp.groups import SequenceParallelGroups

__all__ = ["PrefillInputs", "sharded_response_scores"]


@dataclass
class PrefillInputs:
    """Everything one sharded prefill needs, full-width and identical on every rank of the SP group."""

    input_ids: torch.Tensor  # (b, P + R)
    attention_mask: torch.Tensor  # (b, P + R): left-padded prompt, right-padded response
    position_ids: torch.Tensor  # (b, P + R) or (k, b, P + R) for mrope
    responses: torch.Tensor  # (b, R)
    features: torch.Tensor | None  # (placeholders, hidden): the video features in row-major placeholder order
    placeholder_id: int | None  # the video placeholder token id
    pad_token_id: int


@dataclass
class _Layout:
    input_ids: torch.Tensor  # (rows, W)
    position_ids: torch.Tensor  # (rows, W) or (k, rows, W)
    segments: tuple[tuple[int, int, int], ...]
    predictors: torch.Tensor  # (m,) flat indices into (rows, W) of positions that predict a response token
    targets: torch.Tensor  # (m, 2) the (row, response column) each predictor predicts


def _valid_spans(attention_mask: torch.Tensor) -> list[tuple[int, int]]:
    spans = []
    for row, mask in enumerate(attention_mask.bool()):
        valid = mask.nonzero().flatten()
        if valid.numel() == 0:
            spans.append((0, 0))
            continue
        start, end = int(valid[0]), int(valid[-1]) + 1
        if valid.numel() != end - start:
            raise ValueError(f"row {row}: attention_mask must be one contiguous run of 1s (a left-padded prompt then "
                             f"a right-padded response); it has holes between columns {start} and {end}")
        spans.append((start, end))
    return spans


def _padded_layout(inputs: PrefillInputs) -> _Layout:
    rows, width = inputs.input_ids.shape
    response_width = inputs.responses.shape[1]
    first = width - response_width - 1  # column P - 1 predicts response token 0
    cols = torch.arange(first, first + response_width)
    row_index = torch.arange(rows).repeat_interleave(response_width)
    predictors = row_index * width + cols.repeat(rows)
    targets = torch.stack([row_index, torch.arange(response_width).repeat(rows)], dim=1)
    segments = tuple((row, start, end) for row, (start, end) in enumerate(_valid_spans(inputs.attention_mask))
                     if end > start)
    return _Layout(inputs.input_ids, inputs.position_ids, segments, predictors, targets)


def _packed_layout(inputs: PrefillInputs) -> _Layout:
    width = inputs.input_ids.shape[1]
    prompt_width = width - inputs.responses.shape[1]
    ids, positions, segments, predictors, targets = [], [], [], [], []
    offset = 0
    for row, (start, end) in enumerate(_valid_spans(inputs.attention_mask)):
        if end == start:
            continue
        ids.append(inputs.input_ids[row, start:end])
        positions.append(inputs.position_ids[..., row, start:end])
        segments.append((0, offset, offset + end - start))
        for column in range(max(prompt_width, start + 1), end):  # response tokens inside the valid span
            predictors.append(offset + column - 1 - start)
            targets.append((row, column - prompt_width))
        offset += end - start
    return _Layout(torch.cat(ids)[None], torch.cat(positions, dim=-1).unsqueeze(-2), tuple(segments),
                   torch.tensor(predictors, dtype=torch.long), torch.tensor(targets, dtype=torch.long).view(-1, 2))


def _pad_width(tensor: torch.Tensor, multiple: int, value: int) -> torch.Tensor:
    extra = -tensor.shape[-1] % multiple
    if not extra:
        return tensor
    return torch.cat([tensor, tensor.new_full((*tensor.shape[:-1], extra), value)], dim=-1)


def sharded_response_scores(
    model: torch.nn.Module,
    inputs: PrefillInputs,
    groups: SequenceParallelGroups,
    encoder_kwargs: Callable[[torch.Tensor], dict[str, Any]],
    temperature: float = 1.0,
    with_entropy: bool = False,
    padding_free: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(log_probs, entropy)`` of every response token, ``(b, R)`` float32, the same on every rank of the group.

    ``encoder_kwargs(features)`` turns the features of this rank's placeholders into the forward's keywords (the
    model family's way of taking precomputed vision features).
    """
    layout = _packed_layout(inputs) if padding_free else _padded_layout(inputs)
    device = inputs.input_ids.device
    ids = _pad_width(layout.input_ids, groups.sp_size, inputs.pad_token_id)
    positions = _pad_width(layout.position_ids, groups.sp_size, 0)
    rows, width = ids.shape
    block = width // groups.sp_size
    lo, hi = groups.sp_rank * block, (groups.sp_rank + 1) * block

    kwargs: dict[str, Any] = {}
    if inputs.features is not None and inputs.placeholder_id is not None:
        is_placeholder = ids == inputs.placeholder_id
        order = (is_placeholder.flatten().cumsum(0) - 1).view(rows, width)  # row-major index into features
        local = order[:, lo:hi][is_placeholder[:, lo:hi]]
        # Passed even when empty: the features then stay in this rank's autograd graph, so the backward of their
        # all-gather (a collective) runs on every rank of the group, not only on those holding placeholders.
        kwargs = encoder_kwargs(inputs.features.index_select(0, local))

    predictors, targets = layout.predictors.to(device), layout.targets.to(device)
    layout_width = layout.input_ids.shape[1]  # predictors index the layout before its width was padded
    pred_rows, pred_cols = predictors // layout_width, predictors % layout_width
    keep = (pred_cols >= lo) & (pred_cols < hi)
    local_cols = torch.unique(pred_cols[keep]) - lo  # sorted: logits_to_keep columns of the local block
    output = model(input_ids=ids[:, lo:hi], position_ids=positions[..., lo:hi], attention_mask=None, use_cache=False,
                   logits_to_keep=local_cols, mrsp_layout=AttentionLayout(layout.segments, groups.group), **kwargs)
    logits = output.logits.float()  # (rows, len(local_cols), V)
    if temperature > 0:
        logits = logits / temperature
    # Pick, for each local predictor, its row and its position among the kept columns.
    slot = torch.searchsorted(local_cols, pred_cols[keep] - lo)
    picked = logits[pred_rows[keep], slot]  # (m_local, V)
    target_rows, target_cols = targets[keep, 0], targets[keep, 1]
    labels = inputs.responses[target_rows, target_cols]
    log_probs_local = torch.log_softmax(picked, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    shape = tuple(inputs.responses.shape)
    log_probs = combine_shards(
        torch.zeros(shape, device=device).index_put((target_rows, target_cols), log_probs_local), groups.group)
    entropy = None
    if with_entropy:
        entropy = combine_shards(
            torch.zeros(shape, device=device).index_put((target_rows, target_cols), entropy_from_logits(picked)),
            groups.group)
    return log_probs, entropy
