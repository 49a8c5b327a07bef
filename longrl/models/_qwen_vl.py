"""What Qwen2-VL and Qwen2.5-VL share: the tiny-directory layout, loading, and video and image encoding.

A family subclass names its model/processor classes and builds its tiny config; everything else is here.

Video encoding contract with the data layer: frames arrive already sampled (``DecodedVideo``) and already
resized to multiples of ``patch_size * merge_size`` (28 for Qwen). The processor is therefore called with
``do_sample_frames=False`` (transformers must not pick frames again) and ``do_resize=False`` (the grid the
data layer chose is the grid the model sees); frames of any other size are rejected with an error rather
than silently rescaled. Frame counts that are not a multiple of the temporal patch size are fine: the
processor repeats the last frame to fill the final temporal patch.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.models.qwen2_vl import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

from longrl.models._encoder_outputs import accept_encoder_outputs
from longrl.models._qwen_vl_positions import use_published_positions
from longrl.models.input_keys import InputKeys
from longrl.models.registry import ModelAdapter
from longrl.models.remote_code import announce_remote_code
from longrl.models.tiny import PATCH_SIZE, SPATIAL_MERGE_SIZE, TEMPORAL_PATCH_SIZE, save_random_model
from longrl.models.tokenizer import CHAT_TEMPLATE, QwenTokenIds, build_tokenizer

if TYPE_CHECKING:
    import numpy as np

    from longrl.data.video import DecodedVideo

# The largest frame the tiny processors allow, Qwen's default cap. Pixel bounds are used only by callers of the
# processor itself (``encode`` never resizes); the smallest frame is one merged token.
_MAX_PIXELS = 12_845_056


class QwenVLAdapter(ModelAdapter):
    """Base of the Qwen vision-language families."""

    supports_video: ClassVar[bool] = True
    supports_images: ClassVar[bool] = True
    positions_3d: ClassVar[bool] = True
    vision_weight_marker: ClassVar[str] = "visual."
    serves_embedding_cache: ClassVar[bool] = True
    # The tower's patch side in pixels; patches merge SPATIAL_MERGE_SIZE x SPATIAL_MERGE_SIZE, frames in pairs.
    patch_size: ClassVar[int] = PATCH_SIZE
    # One merged visual token covers a (patch x merge)^2 square over temporal_patch frames; the data layer
    # resizes frames to multiples of this side and converts worker.rollout.tokens_per_frame into pixels with it.
    video_size_factor: ClassVar[int] = PATCH_SIZE * SPATIAL_MERGE_SIZE
    video_pixels_per_token: ClassVar[int] = (PATCH_SIZE * SPATIAL_MERGE_SIZE) ** 2 * TEMPORAL_PATCH_SIZE
    input_keys: ClassVar[InputKeys] = InputKeys(
        towers={"pixel_values": "image", "pixel_values_videos": "video"},
        positions={"image_grid_thw": "image", "video_grid_thw": "video", "second_per_grid_ts": "video"})
    media_token_attributes: ClassVar[tuple[str, ...]] = ("image_token_id", "video_token_id", "vision_start_token_id",
                                                         "vision_end_token_id")
    # The vision tower attends within frames and windows (cu_seqlens).
    varlen_attention_configs: ClassVar[tuple[str, ...]] = ("vision_config",)
    # The position inputs vLLM's Qwen-VL models read beside precomputed video features.
    vllm_video_keys: ClassVar[tuple[str, ...]] = ("video_grid_thw", "second_per_grid_ts")
    model_class: ClassVar[type[PreTrainedModel]]
    processor_class: ClassVar[type[ProcessorMixin]]
    video_processor_class: ClassVar[type[BaseVideoProcessor]] = Qwen2VLVideoProcessor

    @abstractmethod
    def tiny_config(self, token_ids: QwenTokenIds) -> PreTrainedConfig:
        """The family's tiny config, with special-token ids and vocabulary size taken from the tokenizer."""

    def build_tiny(self, out_dir: str | Path, seed: int = 0) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tokenizer = self.tiny_tokenizer()
        token_ids = QwenTokenIds.from_tokenizer(tokenizer)
        save_random_model(self.model_class, self.tiny_config(token_ids), token_ids, out_dir, seed)
        self.tiny_processor(tokenizer).save_pretrained(str(out_dir))
        return out_dir

    def tiny_tokenizer(self) -> PreTrainedTokenizerFast:
        """The tiny model's tokenizer: the local Qwen tokenizer (a family with more special tokens extends it)."""
        return build_tokenizer()

    def tiny_processor(self, tokenizer: PreTrainedTokenizerFast, **parts: Any) -> ProcessorMixin:
        """The tiny model's processor: Qwen's image and video processors at the tiny patching, ``tokenizer``, and the
        chat template, or ``parts`` given by a subclass (a further feature extractor, its own template)."""
        pixel_bounds = {"min_pixels": self.video_size_factor**2, "max_pixels": _MAX_PIXELS}
        patching = {
            "patch_size": self.patch_size,
            "temporal_patch_size": TEMPORAL_PATCH_SIZE,
            "merge_size": SPATIAL_MERGE_SIZE,
        }
        return self.processor_class(
            image_processor=Qwen2VLImageProcessor(**pixel_bounds, **patching),
            video_processor=self.video_processor_class(**pixel_bounds, **patching, cap_pixels_per_frame=False),
            tokenizer=tokenizer,
            **{"chat_template": CHAT_TEMPLATE, **parts},
        )

    def count_video_tokens(self, processor: ProcessorMixin, frame_times: np.ndarray, height: int, width: int) -> int:
        """Visual tokens of the frames at ``frame_times``, ``height`` x ``width`` (multiples of the size factor); the
        patching is the family's, so ``processor`` is not consulted, and only the frame count matters.

        The processor repeats the last frame to fill the final temporal patch, hence the ceiling.
        """
        grid_t = -(-len(frame_times) // TEMPORAL_PATCH_SIZE)
        return grid_t * self.count_image_tokens(height, width)

    def vision_tower(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.model.visual

    def video_encoder(self, model: torch.nn.Module) -> QwenVideoEncoder:
        return QwenVideoEncoder(model)

    def video_placeholder_id(self, model: torch.nn.Module) -> int:
        return model.config.video_token_id

    def media_placeholder_ids(self, model: torch.nn.Module) -> tuple[int, ...]:
        return (model.config.image_token_id, model.config.video_token_id)

    def count_image_tokens(self, height: int, width: int) -> int:
        return (height // self.patch_size) * (width // self.patch_size) // SPATIAL_MERGE_SIZE**2

    def encoder_kwargs(self, model: torch.nn.Module, features: torch.Tensor,
                       placeholder_tokens: torch.Tensor) -> dict[str, Any]:
        """The video rows as the model's video encoder output; image rows, when the block holds any, as its image
        encoder output. (A block without image placeholders passes no image entry, so a video-only forward is the one
        it always was.)"""
        is_video = placeholder_tokens != model.config.image_token_id
        outputs = {"video": BaseModelOutputWithPooling(pooler_output=(features[is_video],))}
        if not bool(is_video.all()):
            outputs["image"] = BaseModelOutputWithPooling(pooler_output=(features[~is_video],))
        return {"mm_encoder_outputs": outputs}

    def position_ids(self, model: torch.nn.Module, tokens: dict[str, torch.Tensor],
                     vision: dict[str, torch.Tensor]) -> torch.Tensor:
        """3-D mrope ids ``(3, b, S)`` from the image and video grids, exactly as the model's forward computes them
        (the published rule, installed by :meth:`patch_model`)."""
        if "video_grid_thw" not in vision and "image_grid_thw" not in vision:
            return super().position_ids(model, tokens, vision).unsqueeze(0).expand(3, -1, -1)
        positions, _ = model.model.get_rope_index(
            tokens["input_ids"], tokens["mm_token_type_ids"], image_grid_thw=vision.get("image_grid_thw"),
            video_grid_thw=vision.get("video_grid_thw"), second_per_grid_ts=vision.get("second_per_grid_ts"),
            attention_mask=tokens["attention_mask"])
        return positions

    def load_processor(self, model_dir: str | Path, trust_remote_code: bool = False) -> ProcessorMixin:
        announce_remote_code(model_dir, trust_remote_code)
        return AutoProcessor.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)

    def load_model(self, model_dir: str | Path, dtype: torch.dtype = torch.float32,
                   trust_remote_code: bool = False) -> PreTrainedModel:
        announce_remote_code(model_dir, trust_remote_code)
        return self.prepare_model(AutoModelForImageTextToText.from_pretrained(
            str(model_dir), dtype=dtype, trust_remote_code=trust_remote_code))

    def patch_model(self, model: PreTrainedModel) -> PreTrainedModel:
        """Text after a video positioned as the checkpoints were trained (and as vLLM does: see
        _qwen_vl_positions), and precomputed image / video features taken as ``mm_encoder_outputs``."""
        use_published_positions(model)
        accept_encoder_outputs(model.model, {"image": model.config.image_token_id,
                                             "video": model.config.video_token_id})
        return model

    def encode(
        self, processor: ProcessorMixin, messages: list[dict[str, Any]], video: DecodedVideo | None,
        images: Sequence[np.ndarray] = (),
    ) -> dict[str, torch.Tensor]:
        return self._encode_with(processor, messages, video, images, {})

    def _encode_with(
        self, processor: ProcessorMixin, messages: list[dict[str, Any]], video: DecodedVideo | None,
        images: Sequence[np.ndarray], extra: dict[str, Any],
    ) -> dict[str, torch.Tensor]:
        """:meth:`encode` with ``extra`` keywords for the processor call (a subclass's further media, e.g. audio)."""
        check_media(processor, messages, video, images)
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        media: dict[str, Any] = {"images": list(images)} if images else {}
        if video is None:
            return dict(processor(text=[text], **media, **extra, do_resize=False, return_tensors="pt"))
        num_frames, height, width = video.frames.shape[:3]
        # fps here is the rate of the frames handed over, so the processor's sampled_fps (and Qwen2.5-VL's
        # second_per_grid_ts) reflect the data layer's sampling, not the source file's frame rate.
        metadata = {
            "total_num_frames": num_frames,
            "fps": float(video.sampled_fps),
            "frames_indices": list(range(num_frames)),
            "height": height,
            "width": width,
        }
        batch = processor(
            text=[text],
            **media,
            **extra,
            do_resize=False,
            videos=[video.frames],
            video_metadata=[metadata],
            do_sample_frames=False,
            cap_pixels_per_frame=False,
            return_tensors="pt",
        )
        return dict(batch)

    def encode_from_cache(self, processor: ProcessorMixin, messages: list[dict[str, Any]],
                          positions: Mapping[str, torch.Tensor], timestamps: np.ndarray | None
                          ) -> dict[str, torch.Tensor]:
        """:meth:`encode` for a video whose features are already computed (the embedding cache): the same token ids,
        mask, token types and position inputs (grid, seconds per grid) the processor gives for the decoded video, and
        no pixels (nothing is decoded)."""
        if _count_content_items(messages, "video") != 1:
            raise ValueError("encode_from_cache needs messages with exactly one {'type': 'video'} item")
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        text = text.replace(self.video_prompt_marker(processor),
                            self.expanded_video(processor, positions["video_grid_thw"][0], timestamps), 1)
        tokens = processor.tokenizer([text], return_tensors="pt")
        input_ids = tokens["input_ids"]
        video_types = torch.full_like(input_ids, 2)  # the processor's modality id of video tokens
        return {"input_ids": input_ids, "attention_mask": tokens["attention_mask"],
                "mm_token_type_ids": torch.where(input_ids == processor.video_token_id, video_types, 0),
                **positions}

    def vllm_video_prompt(self, processor: ProcessorMixin, token_ids: list[int], features: torch.Tensor,
                          positions: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """The video's run of placeholders collapsed to one (vLLM expands it from the grid); the grid (and seconds per
        grid) beside the features."""
        data = {key: positions[key] for key in self.vllm_video_keys if key in positions}
        return {"prompt_token_ids": collapse_runs(token_ids, processor.video_token_id),
                "multi_modal_data": {"video": {"video_embeds": features, **data}}}

    def video_prompt_marker(self, processor: ProcessorMixin) -> str:
        """The text the chat template renders for a video item, which the processor expands."""
        return processor.video_token

    def expanded_video(self, processor: ProcessorMixin, grid_thw: torch.Tensor, timestamps: np.ndarray | None) -> str:
        """What the processor writes in place of :meth:`video_prompt_marker` for a video of ``grid_thw``: one
        placeholder per merged patch."""
        return processor.video_token * (int(grid_thw.prod()) // processor.video_processor.merge_size**2)


def collapse_runs(token_ids: Sequence[int], token_id: int) -> list[int]:
    """``token_ids`` with every run of consecutive ``token_id`` reduced to a single one."""
    out: list[int] = []
    for token in token_ids:
        if token == token_id and out and out[-1] == token_id:
            continue
        out.append(token)
    return out


def check_media(processor: ProcessorMixin, messages: list[dict[str, Any]], video: DecodedVideo | None,
                images: Sequence[np.ndarray]) -> None:
    """Refuse media that do not match the messages' items (one video item for a video, one image item per image) or
    that the vision grid cannot tile."""
    num_video_items = _count_content_items(messages, "video")
    num_image_items = _count_content_items(messages, "image")
    if num_image_items != len(images):
        raise ValueError(f"messages hold {num_image_items} {{'type': 'image'}} item(s) but {len(images)} image(s) "
                         "were given")
    for position, image in enumerate(images):
        _check_fits_grid(image.shape, f"image {position}", processor.image_processor)
    if video is None:
        if num_video_items:
            raise ValueError(f"messages hold {num_video_items} video item(s) but no video was given")
        return
    if num_video_items != 1:
        raise ValueError(f"messages must hold exactly one {{'type': 'video'}} item for video {video.path}, "
                         f"found {num_video_items}")
    if video.frames.ndim != 4:
        raise ValueError(f"frames of {video.path} must have shape (T, H, W, 3), got {tuple(video.frames.shape)}")
    _check_fits_grid(video.frames.shape[1:], f"frames of {video.path}", processor.video_processor)


def _count_content_items(messages: list[dict[str, Any]], item_type: str) -> int:
    return sum(
        1
        for message in messages
        if not isinstance(message["content"], str)
        for item in message["content"]
        if item.get("type") == item_type
    )


def _check_fits_grid(shape: tuple[int, ...], what: str, processor: Any) -> None:
    """Reject pixels the vision grid cannot tile (``shape`` is ``(H, W, 3)``), instead of letting the processor rescale
    them."""
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"{what} must have shape (H, W, 3) per picture, got {tuple(shape)}")
    factor = processor.patch_size * processor.merge_size
    height, width = shape[:2]
    if height % factor or width % factor:
        raise ValueError(
            f"{what}: {height}x{width} pixels; both sides must be multiples of {factor} "
            f"(patch_size * merge_size): resize them in the data layer, the adapter does not resize"
        )


class QwenVideoEncoder:
    """A Qwen-VL vision tower as MR-SP's :class:`~longrl.mrsp.encode.VideoEncoder`.

    Goes through the model's ``get_video_features`` (registered with FSDP as a forward method, so a sharded tower
    gathers its parameters for the call). Images go through it too: Qwen-VL's ``get_image_features`` runs the same
    tower on the same patch layout (an image is one temporal slice), so one call encodes a row's images and video.
    """

    media_keys = (("pixel_values", "image_grid_thw"), ("pixel_values_videos", "video_grid_thw"))

    def __init__(self, model: torch.nn.Module):
        self.model = model
        vision = model.config.vision_config
        self._merge = vision.spatial_merge_size
        self._patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2

    def __call__(self, pixels: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        return torch.cat(list(self.model.get_video_features(pixels, grid_thw, return_dict=True).pooler_output))

    def num_tokens(self, grid_thw: torch.Tensor) -> torch.Tensor:
        """One feature row per merged ``merge x merge`` block of patches."""
        return grid_thw.prod(-1) // self._merge**2

    def dummy_inputs(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        side = self._merge
        return (torch.zeros(side * side, self._patch_dim, device=device),
                torch.tensor([[1, side, side]], device=device))
