"""Video features for the vLLM backend, from the model's own vision tower (vLLM never runs a tower itself).

This is MR-SP stage 1 at SP size 1 (:func:`longrl.mrsp.encode.encode_row_videos`), the path the training workers
take before their vLLM rollout: prompts then reach the engine as token ids plus ``video_embeds`` and grids. Only the
tower is kept: it is moved to the device, and every other weight of the loaded checkpoint is released (replaced by
storage-less meta tensors), since vLLM holds its own copy of the language model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from longrl.models.registry import ModelAdapter
from longrl.mrsp import build_sp_groups
from longrl.mrsp.encode import encode_row_videos
from longrl.protocol import VIDEO_EMBEDS, VISION_INPUTS, Batch
from longrl.workers.vision_inputs import without_pixels

__all__ = ["TowerFeatures"]


class TowerFeatures:
    """The vision tower of the checkpoint in ``model_dir``, alone on ``device``."""

    def __init__(self, adapter: ModelAdapter, model_dir: str | Path, dtype: torch.dtype, device: torch.device,
                 trust_remote_code: bool = False):
        model = adapter.load_model(model_dir, dtype, trust_remote_code)
        tower = adapter.vision_tower(model)
        _release_all_but(model, tower)
        tower.to(device).eval()
        encoder = adapter.video_encoder(model)
        if encoder is None:
            raise ValueError(f"model family {adapter.family!r} has no video encoder")
        self.encoder = encoder
        self.keys = adapter.input_keys
        self.device = device
        self.groups = build_sp_groups(1)

    @torch.no_grad()
    def attach(self, prompts: Batch) -> Batch:
        """``prompts`` with each video row's features (``video_embeds``, on the CPU) and its pixels dropped."""
        rows = list(prompts.non_tensors[VISION_INPUTS])
        features = encode_row_videos(self.encoder, rows, self.groups, self.device)
        return prompts.with_non_tensors(**{
            VIDEO_EMBEDS: [None if row is None else row.cpu() for row in features],
            VISION_INPUTS: [without_pixels(row, self.keys) for row in rows],
        })


def _release_all_but(model: torch.nn.Module, keep: torch.nn.Module) -> None:
    """Free the memory of every parameter of ``model`` that is not one of ``keep``'s."""
    kept = {id(param) for param in keep.parameters()}
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if id(param) not in kept:
                setattr(module, name, torch.nn.Parameter(param.to("meta"), requires_grad=False))
