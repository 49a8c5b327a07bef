"""Rows rendered into tokenised prompts with their sampled, resized video (and image, and audio) tensors.

Checks happen when the dataset is built, before any training time is spent, from container headers and first
frames only (the rest of the packets are not read, so this stays cheap for thousands of hour-long videos): every row
must be well formed (one video, or none in a file whose rows have none), its video exist and be a video (its images
be images, and with ``data.use_audio`` its audio source hold an audio track: a silent video is a bad row), and (with
``data.filter_overlong_prompts``) a prompt whose length, computed from the stated frame count, size and audio
duration, exceeds ``data.max_prompt_length`` is filtered. A row that fails raises :class:`DatasetRowError` naming
the file and row, or with ``data.on_bad_row=skip`` is dropped. Every dropped row is kept in
:attr:`VideoQADataset.skipped` (the runs report their number as ``data/skipped_rows``) and summarised in one log
block, counted by kind of fault. The full verification (every packet present: truncated files) happens in
``__getitem__``, where the bytes are read anyway; a failure there follows the same policy, returning a
:class:`SkippedRow` that the collate function counts (and logging it the first time).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from longrl.config.schema import DataConfig, RolloutConfig
from longrl.data.audio import AudioDecodeError, NoAudioTrackError, load_audio, read_audio_header
from longrl.data.decoders import read_video_header
from longrl.data.frames import frame_max_pixels, frame_sampling
from longrl.data.images import ImageDecodeError, load_image, read_image_size
from longrl.data.progress import RowProgress
from longrl.data.prompts import FormatPrompt, build_messages
from longrl.data.rows import DatasetRowError, QARow, iter_rows
from longrl.data.targets import TargetTemplate
from longrl.data.video import (
    VideoDecodeError,
    constant_rate_times,
    fit_under_pixels,
    load_video,
    sample_frame_indices,
)
from longrl.models.registry import ModelAdapter
from longrl.protocol import (
    ANSWER,
    EMBED_ENTRY,
    INPUT_IDS,
    OPTIONS,
    QUESTION,
    REASONING,
    ROW_FIELDS,
    TARGET_IDS,
    TASK,
    TIMESTAMPS,
    TOKEN_KEYS,
    UID,
    VIDEO_EMBEDS,
    VIDEO_PATH,
    VISION_INPUTS,
    Batch,
)

if TYPE_CHECKING:
    from longrl.embeds.cache import EmbeddingCache


logger = logging.getLogger(__name__)

# Rows named per kind of fault in the summary logged when a dataset is built.
_SUMMARY_EXAMPLES = 3


@dataclass(frozen=True)
class SkippedRow:
    """A row dropped (``data.on_bad_row=skip``, or ``data.filter_overlong_prompts``): where it came from and why.

    ``reason`` reads "<kind>: <detail>"; the kind is what skipped rows are counted under.
    """

    source: str
    row_index: int
    reason: str
    file: str | None = None  # the row's video, if it names one

    @classmethod
    def from_error(cls, exc: DatasetRowError) -> SkippedRow:
        prefix = f"{exc.kind}:"
        return cls(exc.source, exc.row_index, exc.reason if exc.reason.startswith(prefix) else f"{prefix} {exc.reason}",
                   exc.video)

    @property
    def kind(self) -> str:
        return self.reason.partition(":")[0]

    def where(self) -> str:
        return f"{self.source} row {self.row_index}" + (f" ({self.file})" if self.file else "")


def summarise_skips(name: str, kept: int, skipped: list[SkippedRow]) -> str:
    """One block for the log: how many rows of ``name`` were kept, then per kind of fault the count and the first
    few rows (file and row index, and the row's video)."""
    counts = Counter(skip.kind for skip in skipped)
    lines = [f"dataset {name}: kept {kept} rows, dropped {len(skipped)}:"]
    width = max(len(kind) for kind in counts)
    for kind, count in counts.most_common():
        examples = [skip.where() for skip in skipped if skip.kind == kind][:_SUMMARY_EXAMPLES]
        more = ", ..." if count > len(examples) else ""
        lines.append(f"  {kind:<{width}}  {count:>6}  e.g. {'; '.join(examples)}{more}")
    return "\n".join(lines)


class VideoQADataset(Dataset):
    """Samples for RL and SFT: ``input_ids`` of the rendered prompt plus the model family's video tensors.

    With ``targets`` (the CoT-SFT stage) each sample also carries ``target_ids``: the row's rendered target, then
    the tokenizer's end-of-turn token, so the fine-tuned model learns to stop where generation stops. A target longer
    than ``data.max_response_length`` is a bad row (named, or skipped under ``data.on_bad_row=skip``), never
    silently truncated.
    """

    def __init__(
        self,
        files: str,
        data: DataConfig,
        rollout: RolloutConfig,
        adapter: ModelAdapter,
        processor: Any,
        cache: EmbeddingCache | None = None,
        targets: TargetTemplate | None = None,
    ):
        self.data, self.adapter, self.processor, self.cache = data, adapter, processor, cache
        self.targets = targets
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.sampling = frame_sampling(rollout)
        self.max_pixels = frame_max_pixels(data, rollout, adapter)
        self.format_prompt = FormatPrompt.from_file(data.format_prompt)
        self.skipped: list[SkippedRow] = []
        self._logged: set[tuple[str, int]] = set()  # rows whose skip while loading was logged (once, not per epoch)
        on_bad_row = self._skip_malformed if data.on_bad_row == "skip" else None
        progress = RowProgress(files)
        self.rows: list[QARow] = [row for row in iter_rows(files, data, on_bad_row) if progress.count(self._admit(row))]
        progress.finish()
        if self.skipped:
            logger.warning(summarise_skips(files, len(self.rows), self.skipped))
        if not self.rows:
            raise ValueError(f"dataset {files!r} has no usable rows ({len(self.skipped)} skipped: "
                             f"{dict(self.skip_reasons())})")

    def skip_reasons(self) -> Counter:
        """How many rows were skipped per kind of fault."""
        return Counter(skip.kind for skip in self.skipped)

    def _skip_malformed(self, exc: DatasetRowError) -> None:
        self.skipped.append(SkippedRow.from_error(exc))

    def _fail(self, row: QARow, reason: str, cause: Exception | None = None) -> bool:
        if self.data.on_bad_row == "skip":
            self.skipped.append(SkippedRow(row.source, row.row_index, reason, row.video))
            return False
        raise DatasetRowError(row.source, row.row_index, reason, row.video) from cause

    def _skip_loaded(self, row: QARow, reason: str, cause: Exception | None = None) -> SkippedRow:
        """A row that failed while loading: raised (``data.on_bad_row=error``) or logged once and returned."""
        self._fail(row, reason, cause)
        skipped = self.skipped[-1]
        if (row.source, row.row_index) not in self._logged:
            self._logged.add((row.source, row.row_index))
            logger.warning("dropping %s: %s", skipped.where(), reason)
        return skipped

    def _target_ids(self, row: QARow) -> list[int]:
        text = self.targets.render(row)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]

    def _admit(self, row: QARow) -> bool:
        """Read the row's video and image headers and check the prompt (and target) length; False (under the skip
        policy) drops it."""
        if self.targets is not None:
            length = len(self._target_ids(row))
            if length > self.data.max_response_length:
                return self._fail(row, f"overlong target: {length} tokens > data.max_response_length "
                                       f"{self.data.max_response_length} (raise the limit or shorten the reasoning)")
        if row.images and not self.adapter.supports_images:
            return self._fail(row, f"images unsupported: the row has {len(row.images)} image(s) but model family "
                                   f"{self.adapter.family!r} takes none (data.image_key={self.data.image_key!r})")
        if row.audio is not None and not self.adapter.supports_audio:
            return self._fail(row, f"audio unsupported: data.use_audio=true but model family {self.adapter.family!r} "
                                   "takes no audio")
        try:
            image_sizes = [self._image_size(path) for path in row.images]
        except ImageDecodeError as exc:
            return self._fail(row, f"unreadable image: {exc}", exc)
        media_tokens = sum(self.adapter.count_image_tokens(height, width) for height, width in image_sizes)
        if row.video is not None:
            try:
                probe = read_video_header(row.video)
            except VideoDecodeError as exc:
                return self._fail(row, f"unreadable video: {exc}", exc)
            # the header gives no frame times: the count assumes a constant rate (__getitem__ checks the real prompt)
            times, duration = constant_rate_times(probe.num_frames, probe.fps)
            frame_times = times[sample_frame_indices(times, duration, self.sampling)]
            height, width = fit_under_pixels(probe.height, probe.width, self.max_pixels, self.data.min_pixels,
                                             self.adapter.video_size_factor)
            media_tokens += self.adapter.count_video_tokens(self.processor, frame_times, height, width)
        if row.audio is not None:
            try:
                audio = read_audio_header(row.audio)
            except AudioDecodeError as exc:
                return self._fail(row, self._audio_reason(row, exc), exc)
            media_tokens += self.adapter.count_audio_tokens(audio.num_samples(self.adapter.audio_sampling_rate))
        if not self.data.filter_overlong_prompts or (row.video is None and not row.images and row.audio is None):
            return True
        text_tokens = len(self.adapter.render_prompt_ids(self.processor, build_messages(row, self.format_prompt)))
        # Each image / the video / the audio is one placeholder token in the rendered text, replaced by its tokens.
        length = text_tokens - len(row.images) - (row.video is not None) - (row.audio is not None) + media_tokens
        if length > self.data.max_prompt_length:
            self.skipped.append(SkippedRow(row.source, row.row_index, f"overlong prompt: {length} tokens > "
                                           f"data.max_prompt_length {self.data.max_prompt_length}", row.video))
            return False
        return True

    def _audio_reason(self, row: QARow, exc: AudioDecodeError) -> str:
        """Why a row's audio failed, saying where data.use_audio looked for it."""
        if isinstance(exc, NoAudioTrackError) and row.audio == row.video:
            return (f"no audio track: {exc} (data.use_audio=true reads a row's audio from its video unless the row "
                    f"names an audio file under data.audio_key={self.data.audio_key!r})")
        return f"unreadable audio: {exc}"

    def _image_size(self, path: str) -> tuple[int, int]:
        """The grid size an image is resized to (images take ``data.max_pixels``, not the per-frame budget)."""
        height, width = read_image_size(path)
        return fit_under_pixels(height, width, self.data.max_pixels, self.data.min_pixels,
                                self.adapter.video_size_factor)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any] | SkippedRow:
        """The row's prompt and video tensors; with an embedding cache, a cached video is not decoded at all: the row
        carries its features and grid instead of pixels (``video_embeds``, ``embed_entry`` for the workers)."""
        row = self.rows[index]
        messages = build_messages(row, self.format_prompt)
        # The cache holds a video's features; a row that also has images or audio is encoded whole (its features are
        # one stream: images, video, audio).
        cacheable = self.cache is not None and row.video is not None and not row.images and row.audio is None
        entry = self.cache.entry(row.video) if cacheable else None
        cached = self.cache.load(entry) if entry is not None else None
        timestamps = None
        if cached is not None:
            timestamps = None if cached.timestamps is None else cached.timestamps.numpy()
            inputs = self.adapter.encode_from_cache(self.processor, messages, cached.positions, timestamps)
        else:
            video = None
            if row.video is not None:
                try:
                    video = load_video(row.video, self.sampling, max_pixels=self.max_pixels,
                                       min_pixels=self.data.min_pixels, size_factor=self.adapter.video_size_factor)
                except VideoDecodeError as exc:
                    return self._skip_loaded(row, f"unreadable video: {exc}", exc)
                timestamps = video.timestamps
            media: dict[str, Any] = {}
            try:
                images = [load_image(path, self.data.max_pixels, self.data.min_pixels, self.adapter.video_size_factor)
                          for path in row.images]
            except ImageDecodeError as exc:
                return self._skip_loaded(row, f"unreadable image: {exc}", exc)
            if images:
                media["images"] = images
            if row.audio is not None:
                try:
                    media["audio"] = load_audio(row.audio, self.adapter.audio_sampling_rate)
                except AudioDecodeError as exc:
                    return self._skip_loaded(row, self._audio_reason(row, exc), exc)
            inputs = self.adapter.encode(self.processor, messages, video, **media)
        length = int(inputs[INPUT_IDS].shape[-1])
        if length > self.data.max_prompt_length:
            reason = (f"overlong prompt: {length} tokens exceed data.max_prompt_length {self.data.max_prompt_length}; "
                      "raise the limit, lower the frame count/pixels, or set data.filter_overlong_prompts=true")
            return self._skip_loaded(row, reason)
        return {
            UID: row.uid,
            "inputs": {key: value[0] if key in TOKEN_KEYS else value for key, value in inputs.items()},
            QUESTION: row.question,
            OPTIONS: row.options,
            ANSWER: row.answer,
            REASONING: row.reasoning,
            TASK: row.task,
            VIDEO_PATH: row.video,
            TIMESTAMPS: timestamps,
            VIDEO_EMBEDS: None if cached is None else cached.features,
            EMBED_ENTRY: entry,
            **({TARGET_IDS: self._target_ids(row)} if self.targets is not None else {}),
        }


def collate_left_padded(samples: list[dict[str, Any] | SkippedRow], pad_token_id: int) -> dict[str, Any]:
    """Stack prompts left-padded, so every response starts right after its prompt at the same column.

    Vision tensors differ in size per sample and stay a per-sample list; skipped rows are counted, not returned.
    """
    kept = [sample for sample in samples if not isinstance(sample, SkippedRow)]
    skipped = [sample for sample in samples if isinstance(sample, SkippedRow)]
    width = max((len(sample["inputs"][INPUT_IDS]) for sample in kept), default=0)
    token_keys = [key for key in TOKEN_KEYS if kept and key in kept[0]["inputs"]]
    tokens = {key: torch.full((len(kept), width), pad_token_id if key == INPUT_IDS else 0, dtype=torch.long)
              for key in token_keys}
    for row, sample in enumerate(kept):
        for key in token_keys:
            values = sample["inputs"][key]
            tokens[key][row, width - len(values):] = values
    vision = [{k: v for k, v in sample["inputs"].items() if k not in TOKEN_KEYS} for sample in kept]
    fields = {key: [sample[key] for sample in kept] for key in (*ROW_FIELDS, TIMESTAMPS)}
    fields.update({key: [sample.get(key) for sample in kept] for key in (VIDEO_EMBEDS, EMBED_ENTRY, TARGET_IDS)})
    return {**tokens, VISION_INPUTS: vision, **fields, "skipped": skipped}


def prompts_to_batch(collated: dict[str, Any]) -> Batch:
    """The collated prompts as a :class:`Batch` (vision inputs and row fields per sample).

    With the embedding cache the rows also carry their entries (and timestamps, stored with a written-back entry), and
    cached rows their features (``video_embeds``), which the workers then use instead of encoding.
    """
    tensors = {key: collated[key] for key in TOKEN_KEYS if key in collated}
    fields = [*ROW_FIELDS, VISION_INPUTS]
    if any(entry is not None for entry in collated.get(EMBED_ENTRY, [])):
        fields += [EMBED_ENTRY, TIMESTAMPS]
    if any(features is not None for features in collated.get(VIDEO_EMBEDS, [])):
        fields.append(VIDEO_EMBEDS)
    return Batch.from_dict(tensors, {key: collated[key] for key in fields})
