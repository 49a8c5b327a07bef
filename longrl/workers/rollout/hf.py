"""Rollout with a Hugging Face model: the quickstart default engine.

The engine holds its own full (unsharded) copy of the model. Each prompt's media features reach the prefill through
the family's ``encoder_kwargs``, as in the actor's forward (the features come with the prompts as ``video_embeds``,
MR-SP stage 1 run by the worker on the actor's tower, or, for prompts without them, from one pass of this copy's
towers).
Each prompt is then prefilled once and its ``n`` samples decoded from the shared key/value cache
(:mod:`longrl.workers.rollout.decode`), not prefilled ``n`` times as ``generate`` over ``n`` copies would.

Positions: the family's adapter computes them over prompt + response columns (3-D mrope positions from the token ids
and the media grids, where the family has them), the rule the actor's forward applies to the same rows.

Rollout log-probs are recorded from the raw logits of each step before any sampling processor touches
them, as ``log_softmax(logits / T)`` (``T = 1`` for greedy): the distribution the actor recomputes, not
the top-k/top-p truncated one the token was drawn from.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel
from transformers.generation.logits_process import (
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from longrl.models import adapter_for_model_dir
from longrl.mrsp import build_sp_groups, encode_row_media
from longrl.protocol import ATTENTION_MASK, INPUT_IDS, MM_TOKEN_TYPE_IDS, VISION_INPUTS, Batch
from longrl.workers.rollout.base import RolloutEngine, WeightsLike
from longrl.workers.rollout.compiled_layers import compile_decode_layers
from longrl.workers.rollout.decode import DecodeInputs, sample_with_shared_prefill
from longrl.workers.rollout.output import build_rollout_batch
from longrl.workers.rollout.sampling import SamplingParams
from longrl.workers.vision_inputs import (
    VIDEO_EMBEDS,
    has_pixels,
    joined_features,
    placeholder_tokens,
    position_inputs,
)

if TYPE_CHECKING:
    from longrl.config.schema import ModelConfig, RolloutConfig
    from longrl.models.registry import ModelAdapter

__all__ = ["HFRollout"]


class HFRollout(RolloutEngine):
    """``generate`` on a full local copy of the model in ``model_dir`` (any family with an adapter)."""

    # The copy runs its own towers for prompts that come without their features.
    needs_video_features = False

    @classmethod
    def from_config(cls, model: ModelConfig, rollout: RolloutConfig, adapter: ModelAdapter, dtype: torch.dtype,
                    device: torch.device) -> HFRollout:
        """The engine over ``worker.actor.model``'s checkpoint; of ``worker.rollout`` it reads ``enforce_eager`` (no
        captured, no compiled decode step)."""
        return cls(model.model_path, dtype=dtype, device=device, trust_remote_code=model.trust_remote_code,
                   cuda_graphs=not rollout.enforce_eager)

    def __init__(self, model_dir: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 trust_remote_code: bool = False, cuda_graphs: bool = True, compile_decode: bool | None = None):
        """``cuda_graphs``: capture the decode step in a CUDA graph (on CUDA; see rollout/decode.py);
        ``compile_decode``: decode through compiled decoder layers (rollout/compiled_layers.py; ``None``: on CUDA
        with ``cuda_graphs``, the two being what ``worker.rollout.enforce_eager=false`` asks for, for a 16-bit model:
        fused kernels round float32 intermediates differently, so a float32/float64 engine, a reference run, stays
        exact by decoding eagerly)."""
        self.device = torch.device(device)
        self.cuda_graphs = cuda_graphs
        self.adapter = adapter_for_model_dir(model_dir)
        self.model: PreTrainedModel = self.adapter.load_model(model_dir, dtype, trust_remote_code)
        self.model.to(self.device).eval()
        if compile_decode is None:
            compile_decode = cuda_graphs and self.device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)
        if compile_decode:
            compile_decode_layers(self.model)
        # Media tokens are never generated (see ModelAdapter.media_token_ids). Log-probs are recorded before any
        # processor, so rollout log-probs stay those of the full distribution the actor scores.
        self._no_media_tokens = SuppressTokensLogitsProcessor(self.adapter.media_token_ids(self.model.config),
                                                              device=self.device)
        self._groups = build_sp_groups(1)  # this copy's towers are its own: no process group is involved

    @torch.no_grad()
    def generate(self, prompts: Batch, sampling: SamplingParams) -> Batch:
        _check_prompts(prompts)
        out_device = prompts.tensors[INPUT_IDS].device
        input_ids = prompts.tensors[INPUT_IDS].to(self.device)
        attention_mask = prompts.tensors[ATTENTION_MASK].to(self.device)
        keys = self.adapter.input_keys
        vision_rows = list(prompts.non_tensors.get(VISION_INPUTS, [{}] * len(prompts)))
        # Once per prompt, shared by its n samples; from the rows' precomputed features when they carry them.
        features = joined_features(self._row_features(prompts, vision_rows), self.device)
        prefill = {} if features is None else self.adapter.encoder_kwargs(
            self.model, features, placeholder_tokens(input_ids, self.adapter.media_placeholder_ids(self.model)))
        grids = {key: value.to(self.device) for key, value in position_inputs(vision_rows, keys).items()}
        mm_token_type_ids = prompts.tensors[MM_TOKEN_TYPE_IDS] if MM_TOKEN_TYPE_IDS in prompts.tensors.keys() else None
        positions = self._positions(input_ids, attention_mask, mm_token_type_ids, grids, sampling.max_new_tokens)
        generated, log_probs = sample_with_shared_prefill(
            self.model, DecodeInputs(prefill, input_ids, attention_mask, positions),
            LogitsProcessorList([self._no_media_tokens, *_sampling_warpers(sampling)]),
            n=sampling.n, first_sample=sampling.first_sample, max_new_tokens=sampling.max_new_tokens,
            greedy=sampling.greedy, eos_token_ids=sampling.eos_token_ids, pad_token_id=sampling.pad_token_id,
            seed=sampling.seed, log_prob_temperature=1.0 if sampling.greedy else sampling.temperature,
            cuda_graphs=self.cuda_graphs)
        return build_rollout_batch(
            prompts, sampling.n, generated.to(out_device), log_probs.to(out_device),
            sampling.eos_token_ids, sampling.pad_token_id, sampling.max_new_tokens,
        )

    def _row_features(self, prompts: Batch, vision_rows: list[dict[str, torch.Tensor]]) -> list[torch.Tensor | None]:
        """Each row's media features: those it carries (``video_embeds``), else one pass of this copy's towers over
        every such row's inputs together (MR-SP stage 1 at SP size 1, on a tower no other process shares)."""
        features = list(prompts.non_tensors.get(VIDEO_EMBEDS, [None] * len(prompts)))
        todo = [row for row, known in enumerate(features) if known is None
                and has_pixels(vision_rows[row], self.adapter.input_keys)]
        if todo:
            encoded = encode_row_media(self.adapter.video_encoder(self.model), self.adapter.audio_encoder(self.model),
                                       [vision_rows[row] for row in todo], self._groups, self.device,
                                       sharded_tower=False)
            for row, row_features in zip(todo, encoded):
                features[row] = row_features
        return features

    def _positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   mm_token_type_ids: torch.Tensor | None, grids: dict[str, torch.Tensor],
                   max_new_tokens: int) -> torch.Tensor:
        """Position ids of the prompt columns and the ``max_new_tokens`` response columns after them, from the
        family's rule over the joined sequence: the positions the actor scores the rollout at."""
        batch = input_ids.shape[0]
        tokens = {INPUT_IDS: torch.cat([input_ids, input_ids.new_zeros(batch, max_new_tokens)], dim=1),
                  ATTENTION_MASK: torch.cat([attention_mask, attention_mask.new_ones(batch, max_new_tokens)], dim=1)}
        if mm_token_type_ids is not None:
            types = mm_token_type_ids.to(self.device)
            tokens[MM_TOKEN_TYPE_IDS] = torch.cat([types, types.new_zeros(batch, max_new_tokens)], dim=1)
        return self.adapter.position_ids(self.model, tokens, grids)

    @torch.no_grad()
    def load_weights(self, weights: WeightsLike) -> None:
        """Copy every tensor of the model's ``state_dict`` from ``weights`` (cast to the held dtype/device).

        Strict: a missing or unknown name, or a shape mismatch, raises before anything is copied, so a
        half-synced model never generates. (The stream is collected first: this engine holds a full copy anyway.)
        """
        state_dict = dict(weights)
        own = self.model.state_dict()
        missing, unknown = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
        if missing or unknown:
            raise KeyError(
                f"load_weights: {len(unknown)} unknown name(s) {_preview(unknown)} and {len(missing)} missing "
                f"name(s) {_preview(missing)}; names must be the HF model's own state_dict names "
                f"(e.g. {_preview(sorted(own), 2)})"
            )
        wrong = [f"{k}: got {tuple(v.shape)}, model has {tuple(own[k].shape)}" for k, v in state_dict.items()
                 if tuple(v.shape) != tuple(own[k].shape)]
        if wrong:
            raise ValueError(f"load_weights: shape mismatch for {len(wrong)} tensor(s): {_preview(wrong)}")
        for name, tensor in state_dict.items():
            own[name].copy_(tensor)


def _sampling_warpers(sampling: SamplingParams) -> list[LogitsProcessor]:
    """Temperature, top-k, top-p in Hugging Face's own order; nothing for greedy."""
    if sampling.greedy:
        return []
    warpers: list[LogitsProcessor] = []
    if sampling.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(sampling.temperature))
    if sampling.top_k != -1:
        warpers.append(TopKLogitsWarper(sampling.top_k))
    if sampling.top_p < 1.0:
        warpers.append(TopPLogitsWarper(sampling.top_p))
    return warpers


def _check_prompts(prompts: Batch) -> None:
    keys = list(prompts.tensors.keys())
    for key in (INPUT_IDS, ATTENTION_MASK):
        if key not in keys:
            raise KeyError(f"rollout prompts need tensor {key!r}; got tensors {keys}")
    mask = prompts.tensors[ATTENTION_MASK]
    right_padded = (mask[:, -1] == 0).nonzero().flatten().tolist()
    if right_padded:
        raise ValueError(
            f"rollout prompts must be left-padded (attention_mask ending in 1), rows {right_padded} end in padding"
        )


def _preview(names: list[str], limit: int = 5) -> str:
    return str(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
