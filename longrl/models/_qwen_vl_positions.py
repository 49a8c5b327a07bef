"""Qwen-VL's 3-D mrope position rule as the Qwen models were trained with it (and as vLLM computes it).

Text after an image or video continues at ``max(position so far) + 1``: a video of ``t`` temporal patches spans
temporal positions up to ``(t - 1) * tokens_per_second * seconds_per_grid``, so the question that follows a long
video starts after the video's last moment. transformers 5.x instead advances by ``max(h, w) / merge`` after a
vision segment, ignoring the temporal extent; for a video longer than its side in merged tokens (every long
video) the following text then reuses positions inside the video, and the model sees a prompt it was never
trained on, while vLLM (the other rollout engine) positions it the published way. Installing this rule on a
loaded model (:func:`use_published_positions`) makes the HF forward, HF ``generate`` and the sequence-parallel
prefill (which all ask ``model.model.get_rope_index``) agree with each other and with vLLM.

Vision positions (temporal index x time interval truncated to an integer, then height and width) are computed here
rather than by the model's ``get_vision_position_ids``, whose dtype handling changed across transformers 5.x
(5.17 multiplies by an integer interval and fails on a fractional one).
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch

__all__ = ["published_rope_index", "use_published_positions", "vision_positions"]

_TEXT, _IMAGE, _VIDEO = 0, 1, 2


def vision_positions(start: int, grid_thw: torch.Tensor, merge: int, interval: float,
                     device: torch.device) -> torch.Tensor:
    """``(3, t * h * w / merge**2)`` positions of one image or video, offset by ``start``.

    Temporal positions are ``int(index * interval)``, as vLLM computes them (so a fractional seconds-per-grid keeps
    its spacing); height and width step by one merged patch.
    """
    t, h, w = (int(size) for size in grid_thw)
    temporal = (torch.arange(t, device=device) * interval).long()
    height = torch.arange(h // merge, device=device)
    width = torch.arange(w // merge, device=device)
    grid = torch.meshgrid(temporal, height, width, indexing="ij")
    return torch.stack(grid).reshape(3, -1) + start


def published_rope_index(
    self: torch.nn.Module,
    input_ids: torch.LongTensor,
    mm_token_type_ids: torch.IntTensor,
    image_grid_thw: torch.LongTensor | None = None,
    video_grid_thw: torch.LongTensor | None = None,
    second_per_grid_ts: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(position_ids (3, b, S), deltas (b, 1))`` with the signature of the Qwen-VL models' ``get_rope_index``.

    Padding (``attention_mask == 0``) gets position 0 on every axis, as in transformers. Qwen2-VL has no
    ``tokens_per_second``: its temporal positions step by one patch.
    """
    vision = self.config.vision_config
    merge = vision.spatial_merge_size
    tokens_per_second = getattr(vision, "tokens_per_second", None)
    grids = {_IMAGE: iter(image_grid_thw) if image_grid_thw is not None else iter(()),
             _VIDEO: iter(video_grid_thw) if video_grid_thw is not None else iter(())}
    seconds = iter(second_per_grid_ts.tolist()) if second_per_grid_ts is not None else None
    position_ids = torch.zeros(3, *input_ids.shape, dtype=input_ids.dtype, device=input_ids.device)
    deltas = []
    for row in range(input_ids.shape[0]):
        valid = attention_mask[row].bool() if attention_mask is not None else torch.ones_like(input_ids[row]).bool()
        types = mm_token_type_ids[row][valid].tolist()
        segments: list[torch.Tensor] = []
        next_position, start = 0, 0
        while start < len(types):
            end = start
            while end < len(types) and types[end] == types[start]:
                end += 1
            kind = types[start]
            if kind == _TEXT:
                segment = torch.arange(end - start, device=input_ids.device).expand(3, -1) + next_position
            else:
                interval = 1.0
                if kind == _VIDEO and tokens_per_second is not None:
                    interval = tokens_per_second * (next(seconds) if seconds is not None else 1.0)
                segment = vision_positions(next_position, next(grids[kind]), merge, interval, input_ids.device)
                if segment.shape[1] != end - start:
                    raise ValueError(f"row {row}: a vision segment of {end - start} tokens does not match its grid "
                                     f"({segment.shape[1]} merged patches); input_ids and the grids disagree")
            segments.append(segment)
            next_position = int(segment.max()) + 1
            start = end
        positions = torch.cat(segments, dim=1) if segments else position_ids.new_zeros(3, 0)
        position_ids[:, row, valid] = positions.to(position_ids.dtype)
        deltas.append(next_position - input_ids.shape[1])
    return position_ids, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)


def use_published_positions(model: torch.nn.Module) -> torch.nn.Module:
    """Make ``model`` (a Qwen-VL ``...ForConditionalGeneration``) position text after vision the published way."""
    model.model.get_rope_index = MethodType(published_rope_index, model.model)
    return model
