"""What each gloo rank runs in the MR-SP equivalence tests (importable by the spawned processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from longrl.models import get_adapter
from longrl.mrsp import PrefillInputs, build_sp_groups, encode_row_videos, sharded_response_scores, use_mrsp_attention
from longrl.protocol import TOKEN_KEYS
from longrl.workers.vision_inputs import position_inputs


def score_with_sp(family: str, model_dir: str, case_path: str, padding_free: bool, num_chunks: int,
                  with_grad: bool) -> dict[str, Any]:
    """Stage 1 + stage 2 over the whole world as one SP group, on a plain (replicated) model.

    Gradients are averaged over the ranks, as FSDP does: that is where ``combine_shards``' factor is undone.
    """
    case = torch.load(case_path, weights_only=False)
    adapter = get_adapter(family)
    model = adapter.load_model(Path(model_dir)).eval()
    use_mrsp_attention(model)
    groups = build_sp_groups(dist.get_world_size())
    tower = adapter.vision_tower(model)
    encoded_slices: list[int] = []

    def count_slices(module, args, kwargs, out) -> None:
        encoded_slices.append(int(kwargs["grid_thw"][:, 0].sum()))

    tower.register_forward_hook(count_slices, with_kwargs=True)
    with torch.set_grad_enabled(with_grad):
        per_row = encode_row_videos(adapter.video_encoder(model), case["vision_rows"], groups, torch.device("cpu"),
                                    num_chunks)
        features = torch.cat([f for f in per_row if f is not None])
        tokens = {key: case[key] for key in TOKEN_KEYS if key in case}
        grids = position_inputs(case["vision_rows"], adapter.input_keys)
        inputs = PrefillInputs(case["input_ids"], case["attention_mask"], adapter.position_ids(model, tokens, grids),
                               case["responses"], features, adapter.media_placeholder_ids(model), case["pad_token_id"])
        log_probs, entropy = sharded_response_scores(model, inputs, groups, adapter.encoder_kwargs, with_entropy=True,
                                                     padding_free=padding_free)
    result = {"log_probs": log_probs.detach(), "entropy": entropy.detach(), "features": features.detach(),
              "encoded_slices": encoded_slices}
    if with_grad:
        (log_probs * case["weights"]).sum().backward()
        grads = {}
        for name, param in model.named_parameters():
            grad = param.grad if param.grad is not None else torch.zeros_like(param)
            dist.all_reduce(grad)
            grads[name] = grad / dist.get_world_size()
        result["grads"] = grads
    return result


def score_modes(family: str, model_dir: str, case_path: str,
                modes: tuple[tuple[bool, int, bool], ...]) -> list[dict[str, Any]]:
    """:func:`score_with_sp` once per ``(padding_free, num_chunks, with_grad)`` in ``modes``, in order, on the same
    ranks (each pass loads its own model and builds its own groups)."""
    return [score_with_sp(family, model_dir, case_path, *mode) for mode in modes]


def max_masked_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """The largest |a - b| where ``mask`` is set (the scored response positions)."""
    return (a - b).abs()[mask.bool()].max().item()
