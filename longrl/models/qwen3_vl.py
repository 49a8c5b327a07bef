"""Qwen3-VL, dense (``Qwen3VLForConditionalGeneration``): deepstack features, interleaved M-RoPE, timestamped frames.

What differs from Qwen2.5-VL, and where this file handles it:

- **Timestamped frames.** A video's template item ``<|vision_start|><|video_pad|><|vision_end|>`` becomes, per temporal
  patch, its time and its own vision segment: ``<0.5 seconds><|vision_start|><|video_pad|>...<|vision_end|><1.5
  seconds>...``. A patch's time is the mean of its first and last frame's times in the source (the sampled frames' own
  timestamps; Qwen computes the same from frame indices and the source fps). The adapter writes this text itself,
  one rule for the live prompt, the prompt rebuilt from the embedding cache (which keeps the timestamps) and the
  prompt-length count, whatever the transformers version (5.19's processor kept the template's outer vision markers
  around the expansion, 5.25's drops them as Qwen's own processor does; this is the latter).
- **Deepstack.** Besides its merged features the tower gives, per deepstack layer, merged features of an early tower
  layer, which the decoder adds to its hidden states at the visual positions after its first layers. A feature row is
  all of them side by side, ``(tokens, hidden * (1 + deepstack layers))``: MR-SP stage 1 gathers, the embedding cache
  stores and the sequence-parallel prefill slices it as any family's one tensor, and it is the layout vLLM takes as
  video embeddings. :func:`accept_visual_features` splits it inside the forward.
- **Positions.** Interleaved M-RoPE (inside the model's rotary embedding). Each frame is a vision segment of temporal
  size one, so the text after it continues after its largest spatial position: the model's own ``get_rope_index``,
  which is also what vLLM computes, so no position rule is installed.
- **Processor.** ``Qwen3VLVideoProcessor`` with patch 16; pixels and grids come from the image and video processors
  called with the other families' arguments (no resizing, no frame sampling).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from transformers import (
    PreTrainedModel,
    ProcessorMixin,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

from longrl.models._qwen_vl import QwenVideoEncoder, QwenVLAdapter, check_media
from longrl.models.input_keys import InputKeys
from longrl.models.tiny import SPATIAL_MERGE_SIZE, TEMPORAL_PATCH_SIZE, TINY_WINDOWED_VISION, tiny_text_config_kwargs
from longrl.models.tokenizer import VIDEO_PAD, VISION_END, VISION_START, QwenTokenIds

if TYPE_CHECKING:
    from longrl.data.video import DecodedVideo

__all__ = ["Qwen3VLAdapter", "accept_visual_features", "patch_times"]

# Qwen3-VL's tower patch (16 px, where the Qwen2 families' is 14).
PATCH_SIZE = 16
# The template's video item, which the timestamped frames replace.
_VIDEO_ITEM = VISION_START + VIDEO_PAD + VISION_END
_IMAGE_TYPE, _VIDEO_TYPE = 1, 2  # the processor's modality ids in mm_token_type_ids
# One timestamped frame of a video in the rendered prompt; group 1 is its time as printed.
_FRAME = re.compile(rf"<(\d+\.\d) seconds>{re.escape(VISION_START)}(?:{re.escape(VIDEO_PAD)})+{re.escape(VISION_END)}")


def patch_times(frame_times: Sequence[float], temporal_patch_size: int = TEMPORAL_PATCH_SIZE) -> list[float]:
    """The time of each temporal patch: the mean of its first and last frame's times, the last frame repeated to fill
    the final patch (as the processor repeats its pixels)."""
    times = [float(t) for t in frame_times]
    times += times[-1:] * (-len(times) % temporal_patch_size)
    return [(times[i] + times[i + temporal_patch_size - 1]) / 2 for i in range(0, len(times), temporal_patch_size)]


class Qwen3VLAdapter(QwenVLAdapter):
    family: ClassVar[str] = "qwen3_vl"
    model_types: ClassVar[tuple[str, ...]] = ("qwen3_vl",)
    patch_size: ClassVar[int] = PATCH_SIZE
    video_size_factor: ClassVar[int] = PATCH_SIZE * SPATIAL_MERGE_SIZE
    video_pixels_per_token: ClassVar[int] = (PATCH_SIZE * SPATIAL_MERGE_SIZE) ** 2 * TEMPORAL_PATCH_SIZE
    # No seconds per grid: a video's time is in its prompt text.
    input_keys: ClassVar[InputKeys] = InputKeys(
        towers={"pixel_values": "image", "pixel_values_videos": "video"},
        positions={"image_grid_thw": "image", "video_grid_thw": "video"})
    model_class = Qwen3VLForConditionalGeneration
    processor_class = Qwen3VLProcessor
    video_processor_class = Qwen3VLVideoProcessor

    def tiny_config(self, token_ids: QwenTokenIds) -> Qwen3VLConfig:
        text = tiny_text_config_kwargs(token_ids, mrope=True)
        head_dim = text["hidden_size"] // text["num_attention_heads"]
        # Interleaved M-RoPE over the 16 frequency pairs of a 32-wide head, in the proportions of the real
        # [24, 20, 20] of 64: the height and width pairs are every third pair from 1 and from 2, time the rest.
        text["rope_parameters"] = {**text["rope_parameters"], "mrope_section": [6, 5, 5], "mrope_interleaved": True}
        # The other Qwen towers' tiny sizes, without windows (Qwen3-VL's tower attends over whole frames).
        vision = {key: value for key, value in TINY_WINDOWED_VISION.items()
                  if key not in ("window_size", "fullatt_block_indexes")}
        vision.update(
            depth=3,
            patch_size=PATCH_SIZE,
            # A 4 x 4 grid of learned positions, interpolated to each frame's grid as in the real 48 x 48.
            num_position_embeddings=16,
            # Two deepstack levels, from the first two of three tower blocks, added after both decoder layers.
            deepstack_visual_indexes=[0, 1],
        )
        return Qwen3VLConfig(
            text_config={**text, "head_dim": head_dim},
            vision_config=vision,
            **token_ids.vision_token_kwargs(),
            # Tied like Qwen3-VL-2B and -4B.
            tie_word_embeddings=True,
            dtype="float32",
        )

    # ----- prompts -------------------------------------------------------------------------------------------------
    def encode(
        self, processor: ProcessorMixin, messages: list[dict[str, Any]], video: DecodedVideo | None,
        images: Sequence[np.ndarray] = (),
    ) -> dict[str, torch.Tensor]:
        """The rendered chat with each image's and the video's placeholders expanded (the video as timestamped frames,
        its times ``video.timestamps``), and the image and video processors' pixels and grids for the pictures as
        given (no resizing, no frame sampling)."""
        check_media(processor, messages, video, images)
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        media: dict[str, torch.Tensor] = {}
        if images:
            media.update(processor.image_processor(images=list(images), do_resize=False, return_tensors="pt"))
            merge = processor.image_processor.merge_size**2
            before, *after = text.split(processor.image_token)  # one placeholder per image item, in order
            text = before + "".join(processor.image_token * (int(grid.prod()) // merge) + rest
                                    for grid, rest in zip(media["image_grid_thw"], after))
        if video is not None:
            media.update(processor.video_processor(videos=[video.frames], do_resize=False, do_sample_frames=False,
                                                   return_tensors="pt"))
            text = text.replace(self.video_prompt_marker(processor),
                                self.expanded_video(processor, media["video_grid_thw"][0], video.timestamps), 1)
        return {**self._tokens(processor, text), **media}

    def encode_from_cache(self, processor: ProcessorMixin, messages: list[dict[str, Any]],
                          positions: Mapping[str, torch.Tensor], timestamps: np.ndarray | None
                          ) -> dict[str, torch.Tensor]:
        if timestamps is None:
            raise ValueError("a cached Qwen3-VL video needs its frames' timestamps (its prompt shows them), and this "
                             "cache entry has none: encode the video again (remove the entry)")
        return super().encode_from_cache(processor, messages, positions, timestamps)

    def video_prompt_marker(self, processor: ProcessorMixin) -> str:
        return _VIDEO_ITEM

    def expanded_video(self, processor: ProcessorMixin, grid_thw: torch.Tensor, timestamps: np.ndarray | None) -> str:
        """Per temporal patch, its time then its vision segment (one placeholder per merged patch of the frame)."""
        return self._frames_text(processor, grid_thw,
                                 patch_times(timestamps, processor.video_processor.temporal_patch_size))

    def _frames_text(self, processor: ProcessorMixin, grid_thw: torch.Tensor, times: Sequence[float]) -> str:
        """The video's text for patch ``times`` (seconds): each time printed as Qwen prints it, then the frame."""
        if len(times) != int(grid_thw[0]):
            raise ValueError(f"{len(times)} temporal patch times for a video grid of {int(grid_thw[0])} patches")
        per_frame = int(grid_thw[1:].prod()) // processor.video_processor.merge_size**2
        return "".join(f"<{time:.1f} seconds>{VISION_START}{VIDEO_PAD * per_frame}{VISION_END}" for time in times)

    def vllm_video_prompt(self, processor: ProcessorMixin, token_ids: list[int], features: torch.Tensor,
                          positions: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """The timestamped frames collapsed back to one ``<|video_pad|>``, which vLLM's Qwen3-VL expands into the same
        text from the grid and the patch times given beside the features: the times as the prompt prints them, so
        vLLM prints them identically."""
        grid = positions["video_grid_thw"]
        text = processor.tokenizer.decode(token_ids, skip_special_tokens=False)
        times = [float(found.group(1)) for found in _FRAME.finditer(text)]
        block = processor.tokenizer(self._frames_text(processor, grid[0], times), add_special_tokens=False)["input_ids"]
        start = next((at for at in range(len(token_ids) - len(block) + 1)
                      if token_ids[at:at + len(block)] == block), None)
        if start is None:
            raise ValueError(f"the prompt does not hold its video's {int(grid[0, 0])} timestamped frames as encode "
                             "writes them")
        # Batched like the grid: one row of patch times per video.
        video = {"video_embeds": features, "video_grid_thw": grid,
                 "timestamps": torch.tensor([times], dtype=torch.float64)}
        return {"prompt_token_ids": [*token_ids[:start], processor.video_token_id, *token_ids[start + len(block):]],
                "multi_modal_data": {"video": video}}

    def count_video_tokens(self, processor: ProcessorMixin, frame_times: np.ndarray, height: int, width: int) -> int:
        """The timestamped frames' tokens, less the template's outer vision markers they replace (the dataset counts
        the video item as its one placeholder)."""
        temporal = processor.video_processor.temporal_patch_size
        grid = torch.tensor([-(-len(frame_times) // temporal), height // self.patch_size, width // self.patch_size])
        expanded = self.expanded_video(processor, grid, frame_times)
        return len(processor.tokenizer(expanded, add_special_tokens=False)["input_ids"]) - 2

    def _tokens(self, processor: ProcessorMixin, text: str) -> dict[str, torch.Tensor]:
        """``text`` tokenised, with the processor's token types (1 image, 2 video placeholders, 0 otherwise)."""
        tokens = processor.tokenizer([text], return_tensors="pt")
        ids = tokens["input_ids"]
        types = torch.where(ids == processor.image_token_id, _IMAGE_TYPE, 0)
        types = torch.where(ids == processor.video_token_id, _VIDEO_TYPE, types)
        return {"input_ids": ids, "attention_mask": tokens["attention_mask"], "mm_token_type_ids": types}

    # ----- the model -------------------------------------------------------------------------------------------------
    def patch_model(self, model: PreTrainedModel) -> PreTrainedModel:
        """Precomputed visual features (with their deepstack part) taken as ``visual_features``; positions are the
        model's own (see the module docstring)."""
        accept_visual_features(model.model)
        return model

    def video_encoder(self, model: torch.nn.Module) -> DeepstackVideoEncoder:
        return DeepstackVideoEncoder(model)

    def encoder_kwargs(self, model: torch.nn.Module, features: torch.Tensor,
                       placeholder_tokens: torch.Tensor) -> dict[str, Any]:
        """The rows, images' and video's alike, as one stream in placeholder order: deepstack adds every level at all
        visual positions, so nothing is routed by medium."""
        return {"visual_features": features}


class DeepstackVideoEncoder(QwenVideoEncoder):
    """Qwen3-VL's tower as MR-SP's video encoder: each feature row is the merged features then every deepstack
    level's, side by side."""

    def __call__(self, pixels: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        output = self.model.get_video_features(pixels, grid_thw, return_dict=True)
        levels = [output.pooler_output, *output.deepstack_features]
        return torch.cat([torch.cat(list(level)) for level in levels], dim=-1)


def accept_visual_features(model: torch.nn.Module) -> None:
    """Make ``model`` (a ``Qwen3VLModel``) take precomputed features as ``visual_features``: rows of width
    ``hidden * (1 + deepstack levels)``, one per image or video placeholder of ``input_ids`` in row-major order.

    The first ``hidden`` columns are written over the placeholders' embeddings; the decoder adds each further block
    of ``hidden`` at the visual positions after its layer of that level. The stock forward, run on ``input_ids``,
    computes positions as it always does; its language model is handed the spliced embeddings and the deepstack levels
    (the features stay in the autograd graph even when this block holds no placeholder).
    """
    config = model.config
    image_id, video_id = config.image_token_id, config.video_token_id  # ints: a model built on meta has no data
    hidden = config.text_config.hidden_size
    stock_forward = model.forward
    language_model = model.language_model
    stock_language_forward = language_model.forward
    pending: list[tuple[torch.Tensor, list[torch.Tensor]]] = []  # (visual mask, [main, *levels]) of the running call

    def forward(input_ids: torch.Tensor | None = None, visual_features: torch.Tensor | None = None,
                **kwargs: Any) -> Any:
        if visual_features is None:
            return stock_forward(input_ids=input_ids, **kwargs)
        mask = (input_ids == image_id) | (input_ids == video_id)
        if int(mask.sum()) != visual_features.shape[0]:
            raise ValueError(f"the input holds {int(mask.sum())} visual placeholder tokens but "
                             f"{visual_features.shape[0]} feature rows were given")
        pending.append((mask, list(visual_features.split(hidden, dim=-1))))
        try:
            return stock_forward(input_ids=input_ids, **kwargs)
        finally:
            pending.pop()

    def language_forward(*args: Any, inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> Any:
        if pending:
            mask, (main, *levels) = pending[-1]
            inputs_embeds = inputs_embeds.masked_scatter(mask.unsqueeze(-1), main.to(inputs_embeds.dtype))
            kwargs.update(visual_pos_masks=mask, deepstack_visual_embeds=levels)
        return stock_language_forward(*args, inputs_embeds=inputs_embeds, **kwargs)

    model.forward = forward
    language_model.forward = language_forward
