"""MR-SP stage 2: response log-probs (and entropy) from a sequence-sharded prefill.

The caller hands over full-width rows — a left-padded prompt then a right-padded response, ``(b, P + R)`` — with
their full-sequence position ids (3-D mrope ids, where a family has them, must be computed on the whole sequence,
before any sharding) and the visual features to splice (computed once per step by stage 1). Here:

1. **Layout.** Padded: the rows as they are, one causal segment per row (its valid span). Padding-free
   (``padding_free``): the valid tokens of all rows packed into one row, one segment per sample (the ``cu_seqlens``
   boundaries), so no compute is spent on padding. Shared-prefix (``shared_prefix``): packed too, but the rows of
   one prompt (one ``uid``; anywhere in the batch) become that prompt once followed by their responses as
   *branches* that read the prompt and causally themselves (:class:`~longrl.mrsp.attention.AttentionLayout`), each
   with the position ids of its unshared row; every branch's first token is predicted from the prompt's last
   position. The width is ``P + R_1 + ... + R_n`` per group instead of ``n (P + R)``, and the prompt's video
   features are spliced once.
2. **Shard.** The width is right-padded to a multiple of the SP size and each rank keeps one contiguous block of
   columns: its token ids, its position ids, and the visual features of the placeholders that fall in its block.
3. **Forward.** The model runs on the local block only; attention is Ulysses (:mod:`longrl.mrsp.attention`). The LM
   head is applied only at the local columns that predict a response token (``logits_to_keep``), so no logits exist
   for prompt positions.
4. **Gather.** Each rank writes its response positions into a zero ``(b, R)`` tensor and the group sums them
   (:func:`~longrl.mrsp.collectives.combine_shards`), which also makes the update's gradients right.

Positions the layout does not score (response padding) come back as 0; callers mask them with ``response_mask``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
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
    features: torch.Tensor | None  # (placeholders, hidden): the visual features in row-major placeholder order
    placeholder_ids: tuple[int, ...]  # the token ids the features fill (the family's media_placeholder_ids)
    pad_token_id: int
    uids: Sequence[Hashable] | None = None  # (b,) the prompt of each row; rows of one uid share their prompt


@dataclass
class _Layout:
    input_ids: torch.Tensor  # (rows, W)
    position_ids: torch.Tensor  # (rows, W) or (k, rows, W)
    segments: tuple[tuple[int, ...], ...]
    predictors: torch.Tensor  # (m,) flat indices into (rows, W) of positions that predict a response token
    targets: torch.Tensor  # (m, 2) the (row, response column) each predictor predicts
    features: torch.Tensor | None = None  # the inputs' feature row of each placeholder, in layout order (None: same)


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


def _shared_prefix_layout(inputs: PrefillInputs) -> _Layout:
    if inputs.uids is None or len(inputs.uids) != inputs.input_ids.shape[0]:
        raise ValueError("shared_prefix needs PrefillInputs.uids, one per row (rows of one prompt share a uid)")
    width = inputs.input_ids.shape[1]
    prompt_width = width - inputs.responses.shape[1]
    spans = _valid_spans(inputs.attention_mask)
    groups: dict[Hashable, list[int]] = {}
    for row, uid in enumerate(inputs.uids):
        groups.setdefault(uid, []).append(row)
    feature_start = None
    if inputs.placeholder_ids:
        counts = _placeholder_mask(inputs.input_ids, inputs.placeholder_ids).sum(1)
        feature_start = (counts.cumsum(0) - counts).tolist()  # the inputs' features are in row-major order
    ids, positions, segments, predictors, targets, features = [], [], [], [], [], []
    offset = 0
    for uid, rows in groups.items():
        first = rows[0]
        start = min(spans[first][0], prompt_width) if spans[first][1] > spans[first][0] else prompt_width
        for row in rows[1:]:
            if not (torch.equal(inputs.input_ids[row, :prompt_width], inputs.input_ids[first, :prompt_width])
                    and torch.equal(inputs.attention_mask[row, :prompt_width],
                                    inputs.attention_mask[first, :prompt_width])):
                raise ValueError(f"shared_prefix: rows {first} and {row} share uid {uid!r} but not their prompt")
        prompt = slice(start, prompt_width)
        ids.append(inputs.input_ids[first, prompt])
        positions.append(inputs.position_ids[..., first, prompt])
        if feature_start is not None:
            placeholders = int(_placeholder_mask(inputs.input_ids[first, prompt], inputs.placeholder_ids).sum())
            features.append(torch.arange(feature_start[first], feature_start[first] + placeholders))
        prefix = (offset, offset + prompt_width - start)
        if prefix[1] > prefix[0]:
            segments.append((0, *prefix))
        offset = prefix[1]
        for row in rows:
            end = spans[row][1]
            if end <= prompt_width:
                continue
            ids.append(inputs.input_ids[row, prompt_width:end])
            positions.append(inputs.position_ids[..., row, prompt_width:end])
            if prefix[1] > prefix[0]:
                segments.append((0, offset, offset + end - prompt_width, *prefix))
                predictors.append(prefix[1] - 1)  # response token 0 from the prompt's last position
                targets.append((row, 0))
            else:
                segments.append((0, offset, offset + end - prompt_width))
            for column in range(1, end - prompt_width):
                predictors.append(offset + column - 1)
                targets.append((row, column))
            offset += end - prompt_width
    return _Layout(torch.cat(ids)[None], torch.cat(positions, dim=-1).unsqueeze(-2), tuple(segments),
                   torch.tensor(predictors, dtype=torch.long), torch.tensor(targets, dtype=torch.long).view(-1, 2),
                   torch.cat(features) if feature_start is not None else None)


def _placeholder_mask(input_ids: torch.Tensor, placeholder_ids: tuple[int, ...]) -> torch.Tensor:
    return torch.isin(input_ids, torch.tensor(placeholder_ids, device=input_ids.device))


def _pad_width(tensor: torch.Tensor, multiple: int, value: int) -> torch.Tensor:
    extra = -tensor.shape[-1] % multiple
    if not extra:
        return tensor
    return torch.cat([tensor, tensor.new_full((*tensor.shape[:-1], extra), value)], dim=-1)


def sharded_response_scores(
    model: torch.nn.Module,
    inputs: PrefillInputs,
    groups: SequenceParallelGroups,
    encoder_kwargs: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], dict[str, Any]],
    temperature: float = 1.0,
    with_entropy: bool = False,
    padding_free: bool = False,
    shared_prefix: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(log_probs, entropy)`` of every response token, ``(b, R)`` float32, the same on every rank of the group.

    ``encoder_kwargs(model, features, placeholder_tokens)`` turns the features of this rank's placeholders, and the
    token id at each, into the forward's keywords (the model family's way of taking precomputed visual features).
    ``shared_prefix`` (needs ``inputs.uids``) packs each prompt once with its rows' responses as branches; it implies
    ``padding_free``.
    """
    if shared_prefix:
        layout = _shared_prefix_layout(inputs)
    else:
        layout = _packed_layout(inputs) if padding_free else _padded_layout(inputs)
    device = inputs.input_ids.device
    ids = _pad_width(layout.input_ids, groups.sp_size, inputs.pad_token_id)
    positions = _pad_width(layout.position_ids, groups.sp_size, 0)
    rows, width = ids.shape
    block = width // groups.sp_size
    lo, hi = groups.sp_rank * block, (groups.sp_rank + 1) * block

    kwargs: dict[str, Any] = {}
    if inputs.features is not None and inputs.placeholder_ids:
        is_placeholder = _placeholder_mask(ids, inputs.placeholder_ids)
        order = (is_placeholder.flatten().cumsum(0) - 1).view(rows, width)  # row-major index into features
        local = order[:, lo:hi][is_placeholder[:, lo:hi]]
        if layout.features is not None:
            local = layout.features.to(local.device)[local]
        # Passed even when empty: the features then stay in this rank's autograd graph, so the backward of their
        # all-gather (a collective) runs on every rank of the group, not only on those holding placeholders.
        kwargs = encoder_kwargs(model, inputs.features.index_select(0, local), ids[:, lo:hi][is_placeholder[:, lo:hi]])

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
