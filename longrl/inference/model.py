"""Answer questions about videos with a trained (merged Hugging Face) model directory, in a few lines.

>>> model = VideoModel.from_pretrained("path/to/model", backend="hf", num_video_frames=16)
>>> model.generate_content([{"path": "clip.mp4"}, "What happens first?"], thinking=True)

Every step is training's own code path, so a model is asked exactly what it was trained on: the video is decoded,
sampled and resized by :mod:`longrl.data.video` (``num_video_frames`` or ``fps`` capped by ``max_video_frames``,
frames under ``max_pixels``), the prompt is rendered and tokenised by the family's adapter as ``VideoQADataset``
does, prompts are left-padded and batched by ``collate_left_padded`` / ``prompts_to_batch``, and the tokens come from
a rollout engine built by training's factory (:mod:`longrl.workers.rollout.engines`) with :class:`SamplingParams`. An
engine that runs no vision tower (vLLM) is fed each video's features from the model's own tower
(:class:`~longrl.inference.features.TowerFeatures`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from longrl.config.choices import ROLLOUT_ENGINES
from longrl.config.schema import DataConfig, ModelConfig, RolloutConfig
from longrl.data.dataset import collate_left_padded, prompts_to_batch
from longrl.data.video import FrameSampling, load_video
from longrl.inference.contents import Contents, Request, parse_contents
from longrl.inference.features import TowerFeatures
from longrl.inference.prompts import PromptSet
from longrl.models.registry import ModelAdapter, adapter_for_model_dir
from longrl.protocol import RESPONSE_MASK, RESPONSES, ROW_FIELDS, TIMESTAMPS, TOKEN_KEYS, UID
from longrl.workers.rollout.base import RolloutEngine
from longrl.workers.rollout.engines import engine_class, engine_dtype
from longrl.workers.rollout.sampling import SamplingParams

__all__ = ["BACKENDS", "VideoModel"]

# The rollout engines by name (worker.rollout.name's registry).
BACKENDS = tuple(ROLLOUT_ENGINES)


class VideoModel:
    """A model directory behind a rollout engine, with the frame sampling and prompts its questions go through.

    Build it with :meth:`from_pretrained`. ``generate_content`` answers one request, ``generate_batch`` several in one
    engine call; ``messages`` and ``prompt_inputs`` show what a request becomes before generation.
    """

    def __init__(self, adapter: ModelAdapter, processor: Any, engine: RolloutEngine, sampling: FrameSampling,
                 max_pixels: int, min_pixels: int, prompts: PromptSet, stop_token_ids: Sequence[int],
                 tower: TowerFeatures | None = None, constant_frames: bool = False):
        self.adapter, self.processor, self.engine, self.tower = adapter, processor, engine, tower
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.sampling, self.max_pixels, self.min_pixels = sampling, max_pixels, min_pixels
        self.prompts = prompts
        self.constant_frames = constant_frames
        self.stop_token_ids = tuple(stop_token_ids)
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else self.stop_token_ids[0]

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        backend: str = "hf",
        *,
        num_video_frames: int | None = None,
        fps: float | None = None,
        max_video_frames: int = RolloutConfig.max_video_frames,
        max_pixels: int = DataConfig.max_pixels,
        min_pixels: int = DataConfig.min_pixels,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        thinking_prompt: str | Path | None = None,
        direct_prompt: str | Path | None = None,
        max_model_len: int | None = None,
        engine_options: Mapping[str, Any] | None = None,
        trust_remote_code: bool = False,
        constant_frames: bool = False,
    ) -> VideoModel:
        """Load ``model_dir`` (any family with an adapter) behind the ``backend`` engine.

        Frames: ``num_video_frames`` spread evenly, or ``fps`` frames per second of video capped at
        ``max_video_frames``; with neither, ``worker.rollout``'s default of 16 frames. ``dtype`` / ``device`` default
        to float32 on the CPU and bfloat16 on a GPU, as in training. ``thinking_prompt`` / ``direct_prompt`` replace
        the built-in format prompts (:mod:`longrl.inference.prompts`) with jinja files. ``engine_options`` are
        ``worker.rollout`` fields such as ``gpu_memory_utilization`` or ``enforce_eager``, and ``max_model_len`` the
        context (default: the model's own limit); each engine reads those it uses, as in training (vLLM all of them,
        the HF engine ``enforce_eager``). ``trust_remote_code`` lets the directory's own Python code run
        (``worker.actor.model.trust_remote_code`` in training); a directory that needs it is refused without it.
        ``constant_frames`` is a control: every sampled frame is replaced by one constant frame, their per-pixel
        median (:meth:`~longrl.data.video.DecodedVideo.with_constant_frames`), so answers cannot come from the video.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if num_video_frames is None and fps is None:
            num_video_frames = RolloutConfig.num_video_frames
        sampling = FrameSampling(num_frames=num_video_frames, fps=fps, max_frames=max_video_frames)
        device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or engine_dtype(device)
        adapter = adapter_for_model_dir(model_dir)
        processor = adapter.load_processor(model_dir, trust_remote_code)
        engine_cls = engine_class(backend)
        model = ModelConfig(model_path=str(model_dir), trust_remote_code=trust_remote_code)
        engine = engine_cls.from_config(model, _rollout_config(backend, max_model_len, engine_options or {}), adapter,
                                        dtype, device)
        tower = None
        if engine_cls.needs_video_features and adapter.supports_video:
            tower = TowerFeatures(adapter, model_dir, dtype, device, trust_remote_code)
        return cls(adapter, processor, engine, sampling, max_pixels, min_pixels,
                   PromptSet.load(thinking_prompt, direct_prompt), adapter.stop_token_ids(model_dir, processor), tower,
                   constant_frames)

    # ----- what a request becomes --------------------------------------------------------------------------------
    def messages(self, contents: Contents, *, thinking: bool = True,
                 options: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The chat messages ``contents`` is rendered into (the question through the thinking or direct prompt)."""
        return self._messages(parse_contents(contents), thinking, options)

    def prompt_inputs(self, contents: Contents, *, thinking: bool = True,
                      options: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """The model inputs of ``contents`` (a batch of one): token ids, mask and, with a video, its pixels and grid."""
        request = parse_contents(contents)
        messages = self._messages(request, thinking, options)
        if request.video is None:
            return self.adapter.encode(self.processor, messages, None)
        if not self.adapter.supports_video:
            raise ValueError(f"model family {self.adapter.family!r} is text-only; the contents hold video "
                             f"{request.video}")
        video = load_video(request.video, self.sampling, max_pixels=self.max_pixels, min_pixels=self.min_pixels,
                           size_factor=self.adapter.video_size_factor)
        if self.constant_frames:
            video = video.with_constant_frames()
        return self.adapter.encode(self.processor, messages, video)

    def _messages(self, request: Request, thinking: bool, options: Sequence[str] | None) -> list[dict[str, Any]]:
        return request.messages(self.prompts.select(thinking, request.video is not None), options or ())

    # ----- generation ----------------------------------------------------------------------------------------------
    def generate_content(self, contents: Contents, *, thinking: bool = True, options: Sequence[str] | None = None,
                         max_new_tokens: int = 1024, temperature: float = 0.0, top_p: float = 1.0, top_k: int = -1,
                         n: int = 1, seed: int | None = None) -> str | list[str]:
        """The reply to one request: a string, or ``n`` strings when ``n > 1``. ``temperature=0`` is greedy."""
        replies = self.generate_batch([contents], thinking=thinking, options=None if options is None else [options],
                                      max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                      top_k=top_k, n=n, seed=seed)[0]
        return replies if n > 1 else replies[0]

    @torch.no_grad()
    def generate_batch(self, batch: Sequence[Contents], *, thinking: bool = True,
                       options: Sequence[Sequence[str] | None] | None = None, max_new_tokens: int = 1024,
                       temperature: float = 0.0, top_p: float = 1.0, top_k: int = -1, n: int = 1,
                       seed: int | None = None) -> list[list[str]]:
        """Replies to several requests in one engine call: per request, a list of its ``n`` replies.

        ``options[i]`` are request ``i``'s multiple-choice options (rendered with letters), ``None`` for none.
        Replies are decoded without special tokens.
        """
        if options is not None and len(options) != len(batch):
            raise ValueError(f"options has {len(options)} entries for {len(batch)} requests")
        if not batch:
            return []
        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens,
                                eos_token_ids=self.stop_token_ids, pad_token_id=self.pad_token_id, seed=seed)
        samples = [self._sample(index, contents, thinking, None if options is None else options[index])
                   for index, contents in enumerate(batch)]
        prompts = prompts_to_batch(collate_left_padded(samples, self.pad_token_id))
        if self.tower is not None:
            prompts = self.tower.attach(prompts)
        out = self.engine.generate(prompts, params)
        responses, mask = out.tensors[RESPONSES], out.tensors[RESPONSE_MASK].bool()
        texts = [self.tokenizer.decode(row[keep].tolist(), skip_special_tokens=True)
                 for row, keep in zip(responses, mask)]
        return [texts[index * n:(index + 1) * n] for index in range(len(batch))]

    def _sample(self, index: int, contents: Contents, thinking: bool, options: Sequence[str] | None) -> dict[str, Any]:
        """One request in the data layer's sample layout (what ``collate_left_padded`` takes)."""
        inputs = self.prompt_inputs(contents, thinking=thinking, options=options)
        return {
            **{key: None for key in (*ROW_FIELDS, TIMESTAMPS)},
            UID: str(index),
            "inputs": {key: value[0] if key in TOKEN_KEYS else value for key, value in inputs.items()},
        }

    def close(self) -> None:
        """Shut the engine down (vLLM keeps process-wide state; another engine can start in this process after it)."""
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()


def _rollout_config(backend: str, max_model_len: int | None, engine_options: Mapping[str, Any]) -> RolloutConfig:
    """``worker.rollout`` for one engine outside a run: ``engine_options`` over the defaults, and the context that a
    run derives from its prompt and response lengths given as ``max_model_len``."""
    fields = {field.name for field in dataclasses.fields(RolloutConfig) if field.init}
    unknown = sorted(set(engine_options) - fields)
    if unknown:
        raise ValueError(f"engine_options has unknown key(s) {unknown}; they are worker.rollout fields: "
                         f"{sorted(fields)}")
    rollout = RolloutConfig(**{**engine_options, "name": backend})
    rollout.max_model_len = max_model_len
    return rollout
